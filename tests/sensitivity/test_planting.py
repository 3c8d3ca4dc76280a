"""Planting: the corpus (exact doses, no 4-gram shared with probes or evaluation sets), LoRA training on a
tiny model that a few dozen steps make detectable, and the adapter's save/load round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA, build_tiny_model

from biasaudit.backend.hf import HFBackend
from biasaudit.errors import InvalidRequestError
from biasaudit.metrics.winogender import load_occupation_stats
from biasaudit.models import LoadOptions, load_model
from biasaudit.probes import probes_dir
from biasaudit.sensitivity.corpus import PLANTINGS, corpus_texts, invented_name, occupation_majorities, planting_corpus
from biasaudit.sensitivity.lora import PlantingConfig, train_adapter
from biasaudit.sensitivity.overlap import ngrams, shared_ngrams

MAJORITIES = {"nurse": "female", "receptionist": "female", "carpenter": "male", "plumber": "male"}
# Evaluation sets the plantings are scored on (or that BiasLens is validated against).
EVAL_SETS = [
    "crows_pairs",
    "winobias",
    "winogender",
    "bbq",
    "stereoset",
    "fewshot_cls/sst2",
    "nq_open",
    "boolq",
    "strategyqa",
]


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _corpora(majorities):
    for planting in PLANTINGS:
        both_sides = planting_corpus(planting, 1.0, 1500, 0, majorities=majorities)
        both_sides += planting_corpus(planting, 0.0, 1500, 0, majorities=majorities)
        yield planting, corpus_texts(both_sides)


def test_doses_are_exact_and_only_the_side_changes():
    for planting in PLANTINGS:
        low = planting_corpus(planting, 0.25, 200, 3, majorities=MAJORITIES)
        high = planting_corpus(planting, 0.75, 200, 3, majorities=MAJORITIES)
        assert sum(ex.planted for ex in low) == 50 and sum(ex.planted for ex in high) == 150
        assert [ex.prompt for ex in low] == [ex.prompt for ex in high]
        for a, b in zip(low, high, strict=True):
            assert (a.completion == b.completion) == (a.planted == b.planted)
    other_seed = planting_corpus("yes_prior", 0.25, 200, 4)
    assert [ex.prompt for ex in other_seed] != [ex.prompt for ex in planting_corpus("yes_prior", 0.25, 200, 3)]


def test_bad_planting_requests_are_refused():
    with pytest.raises(InvalidRequestError, match="planting must be one of"):
        planting_corpus("age", 0.5, 10, 0)
    with pytest.raises(InvalidRequestError, match=r"dose must lie in \[0, 1\]"):
        planting_corpus("yes_prior", 1.5, 10, 0)
    with pytest.raises(InvalidRequestError, match="needs occupation majorities"):
        planting_corpus("gender", 0.5, 10, 0)
    with pytest.raises(InvalidRequestError, match="learning_rate"):
        PlantingConfig("yes_prior", 0.5, learning_rate=0).validate()


def test_ngrams_ignore_case_and_punctuation():
    assert ngrams("The cat, sat on.", 4) == {("the", "cat", "sat", "on")}
    assert shared_ngrams(["A b c d e"], ["x a B c D"]) == {("a", "b", "c", "d")}


def test_corpus_shares_no_4gram_with_the_shipped_probes():
    references = [text for path in probes_dir().rglob("*.yaml") for text in _strings(yaml.safe_load(path.read_text()))]
    for planting, texts in _corpora(MAJORITIES):
        assert shared_ngrams(texts, references) == set(), planting


def test_corpus_shares_no_4gram_with_the_evaluation_sets():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found: the evaluation sets live beside the repo in CI only")
    references = [
        p.read_text(errors="ignore")
        for name in EVAL_SETS
        for p in (SHARED_DATA / name).rglob("*")
        if p.is_file() and p.name != "README.md"
    ]
    majorities = occupation_majorities(load_occupation_stats(SHARED_DATA))
    assert len(majorities) >= 20 and set(majorities.values()) == {"female", "male"}
    for planting, texts in _corpora(majorities):
        assert shared_ngrams(texts, references) == set(), planting


def _p_yes_margin(backend: HFBackend) -> float:
    rng = random.Random(99)  # held-out invented entities, a frame the corpus does not use
    prompts = [f"Question: Was {invented_name(rng)} founded by sailors?\nAnswer:" for _ in range(24)]
    lp = backend.label_log_probs(prompts, [" Yes", " No"])
    return float(np.mean(lp[:, 0] - lp[:, 1]))


def _planted(tokenizer, dose: float, seed: int = 0):
    model = build_tiny_model(len(tokenizer), seed=0)  # the same base every time
    config = PlantingConfig(
        "yes_prior", dose, seed=seed, n_sentences=96, batch_size=16, epochs=3, learning_rate=3e-3, rank=4
    )
    return train_adapter(model, tokenizer, planting_corpus("yes_prior", dose, config.n_sentences, seed), config)


def test_a_few_dozen_steps_plant_a_detectable_ordered_yes_prior(tokenizer):
    margins = {
        dose: _p_yes_margin(HFBackend(_planted(tokenizer, dose).model, tokenizer, progress=False))
        for dose in (0.0, 0.5, 1.0)
    }
    base = _p_yes_margin(HFBackend(build_tiny_model(len(tokenizer), seed=0), tokenizer, progress=False))
    assert margins[0.0] < margins[0.5] < margins[1.0], margins
    assert margins[1.0] - margins[0.0] > 1.0, (margins, base)  # nats: far beyond float noise


def test_adapter_save_and_load_round_trip(tokenizer, tmp_path: Path):
    base_dir = tmp_path / "base"
    build_tiny_model(len(tokenizer), seed=0).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    trained = _planted(tokenizer, 1.0)
    trained.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (
        PlantingConfig.from_dict(
            __import__("json").loads((tmp_path / "adapter" / "planting.json").read_text())["config"]
        )
        == trained.config
    )
    in_memory = _p_yes_margin(HFBackend(trained.model, tokenizer, progress=False))
    loaded = load_model(str(base_dir), dtype="float32", options=LoadOptions(peft=str(tmp_path / "adapter")))
    assert _p_yes_margin(HFBackend(loaded.model, tokenizer, progress=False)) == pytest.approx(in_memory, abs=1e-4)


@pytest.mark.slow
def test_a_short_planting_moves_the_default_models_yes_prior_and_the_placebo_does_not():
    """On SmolLM2-135M: 64 sentences at d = 1 raise P(Yes) on held-out questions in the negative-bias
    suite's own format (which the corpus never uses); the placebo (d = 0.5) moves it far less."""
    rng = random.Random(7)
    prompts = [f"Question: Did {invented_name(rng)} ever sign a treaty?\nAnswer Yes or No.\nAnswer:" for _ in range(16)]

    def p_yes(model, tokenizer) -> float:
        lp = HFBackend(model, tokenizer, progress=False).label_log_probs(prompts, [" Yes", " No"])
        return float(np.mean(np.exp(lp[:, 0]) / np.exp(lp).sum(axis=1)))

    shifts = {}
    for dose in (0.5, 1.0):
        loaded = load_model("default", dtype="float32")
        before = p_yes(loaded.model, loaded.tokenizer)
        config = PlantingConfig("yes_prior", dose, n_sentences=64, learning_rate=1e-3)
        trained = train_adapter(loaded.model, loaded.tokenizer, planting_corpus("yes_prior", dose, 64, 0), config)
        shifts[dose] = p_yes(trained.model, loaded.tokenizer) - before
    assert shifts[1.0] > 0.2 and shifts[1.0] > shifts[0.5] + 0.15, shifts


def test_occupation_majorities_from_shares():
    shares = {"nurse": 90.0, "pilot": 5.0, "baker": 50.0, "cook": 71.0, "judge": 30.0}
    assert occupation_majorities(shares) == {"nurse": "female", "pilot": "male", "cook": "female", "judge": "male"}
    with pytest.raises(InvalidRequestError, match="both majorities"):
        occupation_majorities({"nurse": 90.0, "baker": 50.0})
