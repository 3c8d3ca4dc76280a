"""The concept pipeline end to end: examples -> cached activations -> CAVs -> saved artefact -> CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from biasaudit.concepts.activations import ActivationStore
from biasaudit.concepts.extract import ConceptExtractionConfig, ConceptExtractor, ConceptVectors
from biasaudit.errors import InvalidRequestError, TooFewExamplesError


def small_config(**kw) -> ConceptExtractionConfig:
    base = dict(groups=["sentiment"], layers=[1, 2], n_examples=40, n_generic=40, n_repeats=2, n_folds=3)
    base.update(kw)
    return ConceptExtractionConfig(**base)


def test_config_round_trips_through_json():
    cfg = small_config(concept_files={"sentiment/positive": "x.txt"})
    assert ConceptExtractionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_pipeline_on_tiny_model(tiny_backend, tmp_path):
    store = ActivationStore(tiny_backend, tmp_path / "cache", progress=False)
    ex = ConceptExtractor(small_config(), cache_dir=tmp_path / "cache", progress=False).fit(tiny_backend, store=store)
    vecs = ex.vectors_
    assert vecs.concepts == ["sentiment/positive", "sentiment/negative"]
    assert vecs.layers == [1, 2]
    for concept in vecs.concepts:
        for layer in vecs.layers:
            v = vecs.vector(concept, layer)
            assert v.shape == (tiny_backend.hidden_size,) and np.isclose(np.linalg.norm(v), 1.0, atol=1e-5)
            r = vecs.result(concept, layer)
            assert 0 <= r.accuracy <= 1 and r.within_group_accuracy is not None
    assert vecs.vector("positive", 2) is vecs.vector("sentiment/positive", 2)
    # The activations handed downstream are exactly the store's.
    texts = ex.vectors_.examples["sentiment/positive"].texts
    np.testing.assert_array_equal(ex.activations_["sentiment/positive"][2], store.get(texts, [2])[2])

    # Save/load is exact; a second fit computes no activations.
    out = ex.save(tmp_path / "out")
    loaded = ConceptVectors.load(out)
    np.testing.assert_array_equal(loaded.vector("negative", 1), vecs.vector("negative", 1))
    assert loaded.results == vecs.results and loaded.config == vecs.config
    assert loaded.examples["generic"].texts == vecs.examples["generic"].texts
    again = ActivationStore(tiny_backend, tmp_path / "cache", progress=False)
    ConceptExtractor(small_config(), cache_dir=tmp_path / "cache", progress=False).fit(tiny_backend, store=again)
    assert again.n_computed == 0


def test_user_text_replaces_a_concept(tiny_backend, tmp_path):
    corpus = tmp_path / "pos.txt"
    corpus.write_text("\n".join(f"Lovely day number {i}." for i in range(30)))
    cfg = small_config(concept_files={"sentiment/positive": str(corpus)})
    ex = ConceptExtractor(cfg, cache_dir=tmp_path, progress=False).fit(tiny_backend)
    assert ex.vectors_.examples["sentiment/positive"].records[0].source == "file"


def test_bad_requests(tiny_backend, tmp_path):
    short = tmp_path / "few.txt"
    short.write_text("one\ntwo\n")
    with pytest.raises(TooFewExamplesError, match="sentiment/positive: only 2 usable examples"):
        ConceptExtractor(small_config(concept_files={"sentiment/positive": str(short)}), cache_dir=tmp_path).fit(
            tiny_backend
        )
    with pytest.raises(InvalidRequestError, match="not in the groups"):
        ConceptExtractor(small_config(concept_files={"gender/male": str(short)}), cache_dir=tmp_path).fit(tiny_backend)
    with pytest.raises(InvalidRequestError, match="generic pool"):
        ConceptExtractor(small_config(groups=["generic"]), cache_dir=tmp_path).fit(tiny_backend)
    ex = ConceptExtractor(small_config(), cache_dir=tmp_path, progress=False).fit(tiny_backend)
    with pytest.raises(InvalidRequestError, match="no concept 'nurse'"):
        ex.vectors_.vector("nurse", 1)
    with pytest.raises(InvalidRequestError, match="at layer 9"):
        ex.vectors_.vector("positive", 9)


@pytest.mark.slow
def test_sentiment_is_linearly_readable_in_the_default_model(default_backend, tmp_path):
    """Issue #3's known answer: sentiment CAVs reach >= 0.9 held-out accuracy at some layer -- both against
    generic text and against the opposite sentiment in the same sentence frames."""
    cfg = ConceptExtractionConfig(groups=["sentiment"], layers=[3, 9, 15, 21], n_repeats=3)
    ex = ConceptExtractor(cfg, cache_dir=tmp_path, progress=False).fit(default_backend)
    for concept in ("sentiment/positive", "sentiment/negative"):
        best = ex.vectors_.result(concept, ex.vectors_.best_layer(concept))
        assert best.accuracy >= 0.9 and best.within_group_accuracy is not None
        assert best.within_group_accuracy >= 0.9
    # Positive examples sit further along the positive CAV than negative ones.
    layer = ex.vectors_.best_layer("positive")
    cav = ex.vectors_.vector("positive", layer)
    pos, neg = ex.activations_["sentiment/positive"][layer], ex.activations_["sentiment/negative"][layer]
    assert (pos @ cav).mean() > (neg @ cav).mean()


@pytest.mark.slow
def test_cli_extract_on_default_model(tmp_path, monkeypatch):
    from biasaudit.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "cx"
    result = CliRunner().invoke(
        app,
        ["concepts", "extract", "default", "--concepts", "sentiment", "--layers", "10-11", "--out", str(out),
         "--n-examples", "40", "--n-generic", "40", "--repeats", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sentiment/positive" in result.output
    data = json.loads((out / "concepts.json").read_text())
    assert data["layers"] == [10, 11] and len(data["cavs"]) == 4
    assert ConceptVectors.load(out).vector("negative", 11).shape == (576,)
    bad = CliRunner().invoke(app, ["concepts", "extract", "default", "--concepts", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "not found" in bad.output


def test_extract_with_an_sae_reports_concepts_in_latent_space(tiny_model, tokenizer, tmp_path):
    from biasaudit.backend.hf import HFBackend
    from biasaudit.cli import app
    from biasaudit.concepts.sae import load_sae
    from biasaudit.concepts.sae_train import SAETrainingConfig, train_sae

    backend = HFBackend(tiny_model, tokenizer, progress=False)
    corpus = [f"The {'abcdefgh'[i % 8]} was on the {'xyz'[i % 3]} at {i} o'clock." for i in range(96)]
    config = SAETrainingConfig(layer=2, d_sae=64, k=4, total_tokens=1024, extract_tokens=900, batch_size_tokens=128)
    train_sae(backend, corpus, config, tmp_path / "sae", progress=False)
    sae = load_sae(tmp_path / "sae", backend=backend)
    ex = ConceptExtractor(small_config(layers=[1]), cache_dir=tmp_path, progress=False).fit(backend, sae=sae)
    assert ex.vectors_.layers == [1, 2]  # the SAE's layer is added
    result = ex.sae_results_["sentiment/positive"]
    assert result.layer == 2 and result.d_sae == 64 and result.cav_accuracy is not None
    assert all(t.mean_difference > 0 for t in result.top_latents)
    ex.save(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "sae_concepts.json").read_text())
    assert set(saved) == {"sentiment/positive", "sentiment/negative"}

    # The same through the CLI, on the tiny model saved as a local folder.
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        ["concepts", "extract", str(model_dir), "--concepts", "sentiment", "--layers", "1", "--out", str(out),
         "--sae", str(tmp_path / "sae"), "--n-examples", "30", "--n-generic", "30", "--repeats", "2", "--folds", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "SAE layer 2" in result.output and (out / "sae_concepts.json").is_file()
    wrong = CliRunner().invoke(
        app,
        ["concepts", "extract", str(model_dir), "--concepts", "sentiment", "--out", str(out), "--sae", str(tmp_path)],
    )
    assert wrong.exit_code == 2 and "error" in wrong.output
