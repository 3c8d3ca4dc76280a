"""The shipped concept groups (``probes/concepts/*.yaml``): they load, give enough template sentences,
keep their concepts separable, and a malformed group fails naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from biasaudit.concepts.definition import PLACEHOLDER, ConceptGroup, load_concept_group
from biasaudit.probes import ProbeValidationError

CONCEPTS_DIR = Path(__file__).resolve().parents[2] / "probes" / "concepts"
FILES = sorted(CONCEPTS_DIR.glob("*.yaml"))
STEMS = [p.stem for p in FILES]
MIN_SENTENCES = 200

EXPECTED = {
    "gender": ["male", "female"],
    "occupations": [
        "nurse",
        "engineer",
        "secretary",
        "carpenter",
        "doctor",
        "receptionist",
        "mechanic",
        "librarian",
        "pilot",
        "hairdresser",
    ],
    "age": ["young", "old"],
    "religion": ["christian", "muslim", "jewish", "hindu", "buddhist", "atheist"],
    "nationality": [
        "american",
        "mexican",
        "chinese",
        "indian",
        "nigerian",
        "german",
        "brazilian",
        "japanese",
        "french",
        "egyptian",
    ],
    "race_ethnicity": ["white", "black", "asian", "hispanic_latino", "arab"],
    "disability": ["disabled", "nondisabled"],
    "socioeconomic": ["rich", "poor"],
    "insurance": ["insured", "uninsured"],
    "prognosis": ["good_prognosis", "poor_prognosis"],
    "traits": [
        "competent",
        "incompetent",
        "violent",
        "peaceful",
        "lazy",
        "hardworking",
        "intelligent",
        "unintelligent",
        "honest",
        "dishonest",
    ],
    "aspects": ["food", "service", "price"],
    "yesno": ["affirmation", "negation"],
}


def _load(stem: str) -> ConceptGroup:
    return load_concept_group(CONCEPTS_DIR / f"{stem}.yaml")


def _sentences(group: ConceptGroup, name: str) -> set[str]:
    spec = group.concept(name)
    return {t.replace(PLACEHOLDER, w) for t in group.templates_for(spec) for w in spec.seed_words}


@pytest.mark.parametrize("stem", STEMS)
def test_concept_file_loads(stem):
    group = _load(stem)
    assert group.name == stem
    assert group.description.strip()
    assert all(spec.description.strip() for spec in group.concepts)


def test_expected_groups_ship_with_their_concepts():
    for stem, names in EXPECTED.items():
        assert stem in STEMS, f"probes/concepts/{stem}.yaml is missing"
        assert _load(stem).names == names


@pytest.mark.parametrize("stem", [s for s in STEMS if s != "generic"])
def test_every_concept_yields_enough_sentences(stem):
    group = _load(stem)
    assert group.kind == "concepts"
    for spec in group.concepts:
        count = len(_sentences(group, spec.name))
        assert count >= MIN_SENTENCES, f"{stem}/{spec.name}: only {count} distinct template sentences"


@pytest.mark.parametrize("stem", STEMS)
def test_seed_words_do_not_repeat_across_concepts(stem):
    group = _load(stem)
    owner: dict[str, str] = {}
    for spec in group.concepts:
        for word in spec.seed_words:
            assert word == word.strip() and word, f"{stem}/{spec.name}: seed word {word!r} is blank or padded"
            key = word.casefold()
            assert key not in owner or owner[key] == spec.name, (
                f"{stem}: seed word {word!r} is in both {owner[key]!r} and {spec.name!r}"
            )
            owner[key] = spec.name


@pytest.mark.parametrize("stem", STEMS)
def test_every_template_has_exactly_one_placeholder(stem):
    group = _load(stem)
    templates = [*group.templates, *(t for spec in group.concepts for t in spec.templates)]
    assert templates
    for template in templates:
        assert template.count(PLACEHOLDER) == 1, f"{stem}: template {template!r}"


@pytest.mark.parametrize("stem", STEMS)
def test_concepts_of_a_group_use_the_same_number_of_frames(stem):
    """Concepts are compared with each other, so none may get extra frames of its own."""
    group = _load(stem)
    counts = {spec.name: len(group.templates_for(spec)) for spec in group.concepts}
    assert len(set(counts.values())) == 1, f"{stem}: templates per concept differ: {counts}"


def _valid_group() -> dict:
    return {
        "name": "broken",
        "description": "A group for testing validation.",
        "templates": ["I saw the {word} today."],
        "concepts": [
            {"name": "a", "description": "Concept a.", "seed_words": ["apple"]},
            {"name": "b", "description": "Concept b.", "seed_words": ["banana"]},
        ],
    }


def _group_template_without_placeholder(data: dict) -> None:
    data["templates"].append("I saw it today.")


def _concept_template_without_placeholder(data: dict) -> None:
    data["concepts"][0]["templates"] = ["Nothing to fill in."]


def _duplicate_concept_names(data: dict) -> None:
    data["concepts"][1]["name"] = "a"


def _missing_group_description(data: dict) -> None:
    del data["description"]


def _missing_concept_description(data: dict) -> None:
    del data["concepts"][1]["description"]


def _empty_concept_description(data: dict) -> None:
    data["concepts"][0]["description"] = "  "


@pytest.mark.parametrize(
    ("break_it", "match"),
    [
        (_group_template_without_placeholder, r"template 'I saw it today\.' has no \{word\} placeholder"),
        (_concept_template_without_placeholder, r"concepts\[0\].*template 'Nothing to fill in\.'"),
        (_duplicate_concept_names, r"concept names repeat"),
        (_missing_group_description, r"missing required field 'description'"),
        (_missing_concept_description, r"concepts\[1\]: missing required field 'description'"),
        (_empty_concept_description, r"concepts\[0\]: concept 'a': description is empty"),
    ],
)
def test_malformed_group_names_the_field(tmp_path, break_it, match):
    path = tmp_path / "broken.yaml"
    data = _valid_group()
    path.write_text(yaml.safe_dump(data))
    assert load_concept_group(path).names == ["a", "b"]

    break_it(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProbeValidationError, match=match) as excinfo:
        load_concept_group(path)
    assert str(path) in str(excinfo.value)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.replace(PLACEHOLDER, " ").lower())


def concept_markers(group: ConceptGroup) -> set[str]:
    """What marks a group's concepts: every seed word or phrase ("value for money"), and each concept's
    own template words that not all of its siblings' templates share (he/his vs she/her), not the frame
    words every concept uses."""
    markers = {" ".join(_words(w)) for spec in group.concepts for w in spec.seed_words}
    own = [{w for t in spec.templates for w in _words(t)} for spec in group.concepts]
    common = set.intersection(*own) if own else set()
    for template_words in own:
        markers |= template_words - common
    return markers - {""}


def test_the_generic_pool_carries_no_word_of_any_concept_group():
    """Every CAV is fitted against the generic pool; a concept word in it (a male subject, "He pointed at
    the ...") would build an asymmetry into every probe that uses that concept's group."""
    generic = load_concept_group("generic")
    texts = [*generic.templates, *(w for spec in generic.concepts for w in spec.seed_words)]
    padded = [f" {' '.join(_words(t))} " for t in texts]
    for stem in STEMS:
        group = load_concept_group(stem)
        if group.kind == "generic":
            continue
        clash = sorted({m for m in concept_markers(group) for text in padded if f" {m} " in text})
        assert not clash, f"generic.yaml uses {clash}, marking the {stem} concepts"


def test_concept_markers_are_the_gender_words_not_the_frame():
    markers = concept_markers(load_concept_group("gender"))
    assert {"he", "his", "she", "her", "man", "woman", "father in law"} <= markers
    assert not {"the", "said", "would", "home"} & markers  # frame words shared by both concepts
