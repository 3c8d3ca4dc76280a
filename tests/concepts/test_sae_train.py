"""SAE training on the tiny random model: files, metrics, outlier dropping, resume, config, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from biasaudit.backend.protocol import TokenStates
from biasaudit.concepts.sae import SAETrainingError, encode, load_sae
from biasaudit.concepts.sae_train import SAETrainingConfig, SAETrainingReport, extract_activations, train_sae
from biasaudit.errors import ConfigError

WORDS, PLACES = ("nurse", "farmer", "teacher", "pilot", "baker"), ("river", "market", "school")
TEXTS = [
    f"Sentence {i}: the {WORDS[i % 5]} walked to the {PLACES[i % 3]} and saw {i % 9} birds near the old house."
    for i in range(90)
]
# 8 steps of 256 tokens over ~2000 extracted tokens, a checkpoint every 3 steps
SMALL = {
    "layer": 1,
    "d_sae": 128,
    "k": 8,
    "total_tokens": 2048,
    "extract_tokens": 2000,
    "batch_size_tokens": 256,
    "checkpoint_every": 3,
    "lr": 3e-3,
}


@pytest.fixture(scope="module")
def backend(tiny_model, tokenizer):
    from biasaudit.backend.hf import HFBackend

    return HFBackend(tiny_model, tokenizer, progress=False)


class Counting:
    """Wraps a backend and counts forward passes over token states (resume must not re-extract)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def iter_token_states(self, *args, **kwargs):
        self.calls += 1
        return self.inner.iter_token_states(*args, **kwargs)


@pytest.fixture(scope="module")
def trained(backend, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae")
    report = train_sae(backend, TEXTS, SAETrainingConfig(**SMALL), out, progress=False)
    return out, report


def test_train_writes_a_loadable_sae_with_metrics_in_range(trained, backend):
    from sae_lens import SAE

    out, report = trained
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
        "training_config.json",
        "training_report.json",
    ]
    sae = SAE.load_from_disk(out)
    assert sae.cfg.metadata.hook_name == "blocks.0.hook_resid_post" and sae.cfg.metadata.biasaudit_layer == 1
    assert sae.cfg.metadata.model_fingerprint == backend.fingerprint
    assert sae.cfg.normalize_activations == "none" and sae.cfg.d_sae == 128 and sae.cfg.k == 8
    assert 0.0 < report.explained_variance <= 1.0 and 0 < report.l0 <= 8 and 0.0 <= report.dead_fraction < 1.0
    assert report.tokens_seen == 2048 and report.steps == 8 and report.n_train_tokens + report.n_eval_tokens <= 2000
    assert report.n_eval_tokens > 0 and report.epochs > 1 and report.wall_time_s > 0
    assert [h["step"] for h in report.history] == [3, 6, 8]
    assert SAETrainingReport.from_dict(json.loads((out / "training_report.json").read_text())) == report
    saved = json.loads((out / "training_config.json").read_text())
    assert saved["config"]["d_sae"] == 128 and saved["config"]["dead_feature_window"] == 50


def test_trained_sae_reconstructs_raw_activations(trained, backend):
    """The export folds the training-time input scaling: the saved SAE takes and returns raw activations."""
    out, report = trained
    loaded = load_sae(out, backend=backend, layer=1)
    x = np.concatenate([s.values[1] for s in backend.iter_token_states(TEXTS[:20], [1])])
    z = encode(loaded, x)
    with torch.no_grad():
        recon = loaded.sae.decode(torch.from_numpy(z)).numpy()
    ev = 1 - ((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert ev == pytest.approx(report.explained_variance, abs=0.15)  # other texts, same distribution
    assert ev > 0.1


def test_finished_run_is_reused_and_a_conflicting_config_is_refused(trained, backend):
    out, report = trained
    counting = Counting(backend)
    again = train_sae(counting, TEXTS, SAETrainingConfig(**SMALL), out, progress=False)
    assert again == report and counting.calls == 0
    with pytest.raises(SAETrainingError, match="another config"):
        train_sae(backend, TEXTS, SAETrainingConfig(**{**SMALL, "k": 4}), out, progress=False)
    with pytest.raises(SAETrainingError, match="another corpus"):
        train_sae(backend, TEXTS[:-1], SAETrainingConfig(**SMALL), out, progress=False)


def test_interrupted_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_one(trained, backend, tmp_path):
    from sae_lens import SAE

    reference_dir, reference = trained

    def interrupt(step):
        if step == 7:
            raise KeyboardInterrupt

    counting = Counting(backend)
    with pytest.raises(KeyboardInterrupt):
        train_sae(counting, TEXTS, SAETrainingConfig(**SMALL), tmp_path, progress=False, on_step=interrupt)
    assert json.loads((tmp_path / "checkpoint" / "progress.json").read_text())["step"] == 6
    assert not (tmp_path / "cfg.json").exists() and counting.calls > 0
    counting.calls = 0
    resumed = train_sae(counting, TEXTS, SAETrainingConfig(**SMALL), tmp_path, progress=False)
    assert counting.calls == 0  # the extracted activations were reused
    assert resumed.resumed_from_step == 6 and resumed.steps == 8 and resumed.tokens_seen == 2048
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "activations").exists()
    a, b = SAE.load_from_disk(reference_dir), SAE.load_from_disk(tmp_path)
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-5)
    assert resumed.explained_variance == pytest.approx(reference.explained_variance, abs=1e-5)


class ScriptedTokens:
    """A backend whose token states are unit-norm noise, except a few planted massive-norm tokens."""

    name, fingerprint, hidden_size, n_layers = "scripted", "scripted", 8, 2

    def iter_token_states(self, texts, layers, *, skip_positions=1):
        for i, text in enumerate(texts):
            n = len(text.split())
            rng = np.random.default_rng(sum(map(ord, text)))
            values = rng.normal(size=(n, 8)).astype(np.float32)
            values /= np.linalg.norm(values, axis=1, keepdims=True)
            if text.startswith("massive"):
                values[-1] *= 100.0
            keep = np.arange(n) >= skip_positions
            yield TokenStates(np.full(keep.sum(), i), np.arange(n)[keep], {layer: values[keep] for layer in layers})


def test_extraction_drops_massive_norm_tokens_and_caps_positions():
    texts = [f"text {i} " + "word " * 20 for i in range(60)] + [f"massive {i} " + "word " * 20 for i in range(4)]
    config = SAETrainingConfig(layer=1, d_sae=16, k=2, batch_size_tokens=32, extract_tokens=10_000, max_seq_len=12)
    acts = extract_activations(ScriptedTokens(), texts, config.resolved(8), progress=False)
    n = len(acts.train) + len(acts.eval)
    assert acts.stats["n_tokens_read"] == 64 * 11  # positions 1..11 of each text
    assert acts.stats["n_dropped"] == 0  # the massive token is the last of 22, beyond max_seq_len
    config = SAETrainingConfig(layer=1, d_sae=16, k=2, batch_size_tokens=32, extract_tokens=10_000)
    acts = extract_activations(ScriptedTokens(), texts, config.resolved(8), progress=False)
    n = len(acts.train) + len(acts.eval)
    assert acts.stats["n_dropped"] == 4 and n == 64 * 21 - 4
    assert acts.stats["dropped_fraction"] == pytest.approx(4 / (64 * 21))
    assert np.linalg.norm(acts.train.astype(np.float32), axis=1).max() < 1.01
    keep_all = SAETrainingConfig(**{**config.to_dict(), "max_norm_factor": None}).resolved(8)
    assert extract_activations(ScriptedTokens(), texts, keep_all, progress=False).stats["n_dropped"] == 0
    with pytest.raises(SAETrainingError, match="pass more text"):
        extract_activations(ScriptedTokens(), texts[:2], config.resolved(8), progress=False)


def test_config_round_trips_through_json_and_is_validated():
    config = SAETrainingConfig(layer=3, k=16, total_tokens=100_000, lr_end=1e-5)
    assert SAETrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    resolved = config.resolved(64)
    assert resolved.d_sae == 256 and resolved.lr_end == 1e-5 and resolved.lr_warmup_steps == 5
    assert resolved.lr_decay_steps == 19 and resolved.dead_feature_window == 50
    assert SAETrainingConfig.from_dict(resolved.to_dict()) == resolved
    with pytest.raises(ConfigError, match=r"unknown SAE training config field\(s\)"):
        SAETrainingConfig.from_dict({"layer": 1, "k_sparsity": 3})
    with pytest.raises(SAETrainingError, match="k=999"):
        SAETrainingConfig(layer=1, d_sae=64, k=999).resolved(64)


def test_cli_trains_on_a_local_model_folder(tmp_path, tiny_model, tokenizer):
    from biasaudit.cli.sae import sae_app

    model_dir = tmp_path / "tiny"
    tiny_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS))
    out = tmp_path / "sae"
    args = ["train", str(model_dir), "--layer", "2", "--out", str(out), "--corpus", str(corpus), "--text-field"]
    args += ["body", "--d-sae", "64", "--k", "4", "--tokens", "2048", "--extract-tokens", "2000"]
    result = CliRunner().invoke(sae_app, args)
    assert result.exit_code == 0, result.output
    assert "explained variance" in result.output and (out / "cfg.json").is_file()
    assert json.loads((out / "training_report.json").read_text())["hook_name"] == "blocks.1.hook_resid_post"
    missing = CliRunner().invoke(sae_app, [*args[:6], "--corpus", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
