"""Concept examples: templates, generation (filters, de-duplication, cache, provenance), user files."""

from __future__ import annotations

import json

import pytest

from biasaudit.concepts.definition import load_concept_group
from biasaudit.concepts.sources import (
    ConceptExamples,
    GenerationConfig,
    concept_examples,
    file_examples,
    generated_examples,
    generic_examples,
    template_examples,
)
from biasaudit.concepts.text_filters import first_sentence, near_duplicates, reject_reason
from biasaudit.errors import InvalidRequestError


class CannedGenerator:
    """A generator whose outputs are scripted; counts calls so cache hits are visible."""

    name, n_layers, hidden_size, fingerprint = "canned", 1, 1, "canned-v1"

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.calls = 0
        self.kwargs = {}

    def format_chat(self, prompt):
        return f"<user>{prompt}<assistant>"

    def generate(self, prompts, **kwargs):
        self.calls += 1
        self.kwargs = kwargs
        return [self.outputs[i % len(self.outputs)] for i in range(len(prompts))]


def test_first_sentence_and_rejections():
    assert first_sentence('\n\n1. "The soup was lovely." And then more.') == "The soup was lovely."
    assert first_sentence("- Sentence 2: Rain fell all day! It stopped.") == "Rain fell all day!"
    assert first_sentence("   ") == ""
    assert reject_reason("", min_words=3, max_words=10) == "empty"
    assert reject_reason("Too short.", min_words=3, max_words=10) == "too_short"
    assert reject_reason("one two three four five six", min_words=1, max_words=5) == "too_long"
    assert reject_reason("I'm sorry, I cannot write that sentence.", min_words=3, max_words=20) == "refusal"
    assert reject_reason("Here is a sentence about rivers.", min_words=3, max_words=20) == "refusal"
    assert reject_reason("The letter to a friend reads:", min_words=3, max_words=20) == "meta"
    assert reject_reason("The river was wide and slow.", min_words=3, max_words=20) is None


def test_near_duplicates_known_answer():
    texts = [
        "The river was wide and slow today.",
        "the river was wide and slow today",  # exact after normalisation
        "The river was wide and slow today!!",  # exact too (punctuation)
        "The river was wide and very slow today.",  # near
        "My cat sleeps on the warm windowsill.",
    ]
    assert near_duplicates(texts, threshold=0.8) == [1, 2, 3]
    assert near_duplicates(texts, threshold=1.01) == [1, 2]


def test_template_examples_cover_every_combination_and_sample_deterministically():
    group = load_concept_group("sentiment")
    spec = group.concept("positive")
    full = template_examples(group, spec)
    assert len(full) == len(group.templates_for(spec)) * len(spec.seed_words)
    record = full.records[0]
    assert record.text == record.template.replace("{word}", record.word)
    a, b = template_examples(group, spec, n=30, seed=3), template_examples(group, spec, n=30, seed=3)
    assert a.texts == b.texts and len(a) == 30
    assert template_examples(group, spec, n=30, seed=4).texts != a.texts


def test_generated_examples_filter_dedupe_cache_and_provenance(tmp_path):
    outputs = [
        "Sure, here is a sentence.",  # refusal/meta
        "Nice.",  # too short
        "1. The concert last night was truly wonderful.\nSecond line.",
        "The concert last night was truly wonderful!",  # duplicate
        "I loved every minute of the long walk.",
        "",
    ]
    gen = CannedGenerator(outputs)
    cfg = GenerationConfig(max_rounds=2)
    ex = generated_examples(
        gen, "sentiment/positive", ["praise"], ["wonderful"], n=5, seed=1, config=cfg, cache_dir=tmp_path
    )
    assert ex.texts == ["The concert last night was truly wonderful.", "I loved every minute of the long walk."]
    assert ex.rejected["refusal"] >= 2 and ex.rejected["too_short"] >= 2 and ex.rejected["empty"] >= 2
    assert ex.rejected["duplicate"] > 0
    assert gen.calls == 2  # two rounds: the filters left it short of n
    assert gen.kwargs["do_sample"] and gen.kwargs["apply_chat_template"]
    rec = ex.records[0]
    assert rec.source == "generated" and "Topic: praise" in rec.prompt and rec.seed == 1000
    # Same request again: answered from the cache, same examples.
    again = generated_examples(
        gen, "sentiment/positive", ["praise"], ["wonderful"], n=5, seed=1, config=cfg, cache_dir=tmp_path
    )
    assert gen.calls == 2 and again.texts == ex.texts
    # A corrupt cache entry is regenerated, not reused.
    for path in (tmp_path / "generated").glob("*.json"):
        path.write_text("{not json")
    generated_examples(
        gen, "sentiment/positive", ["praise"], ["wonderful"], n=5, seed=1, config=cfg, cache_dir=tmp_path
    )
    assert gen.calls == 4


def test_examples_round_trip_jsonl(tmp_path):
    group = load_concept_group("sentiment")
    ex = template_examples(group, group.concept("negative"), n=5)
    ex.rejected = {"duplicate": 2}
    loaded = ConceptExamples.load_jsonl(ex.save_jsonl(tmp_path / "x.jsonl"))
    assert loaded == ex


def test_file_examples_txt_and_jsonl(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_text("first line\n\nsecond line\nfirst line\n")
    ex = file_examples(txt, "user/c")
    assert ex.texts == ["first line", "second line"] and ex.rejected == {"duplicate": 1}
    assert ex.records[1].origin == f"{txt}:3"
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"text": "a b c"}) + "\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(InvalidRequestError, match=r"c\.jsonl:2: no string field 'text'"):
        file_examples(jsonl, "user/c")
    jsonl.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(InvalidRequestError, match=r"c\.jsonl:2: not valid JSON"):
        file_examples(jsonl, "user/c")
    with pytest.raises(InvalidRequestError, match="does not exist"):
        file_examples(tmp_path / "missing.txt", "user/c")


def test_source_selection_errors():
    group = load_concept_group("sentiment")
    spec = group.concept("positive")
    assert concept_examples(group, spec, n=10).records[0].source == "template"
    with pytest.raises(InvalidRequestError, match="needs a generator"):
        concept_examples(group, spec, source="generated")
    assert generic_examples(n=10).records[0].source == "template"


@pytest.mark.slow
def test_default_model_generates_usable_generic_text(default_backend, tmp_path):
    ex = generic_examples(generator=default_backend, n=12, seed=0, cache_dir=tmp_path)
    assert len(ex) >= 10
    assert all(4 <= len(t.split()) <= 40 for t in ex.texts)
    assert len(set(ex.texts)) == len(ex.texts)
