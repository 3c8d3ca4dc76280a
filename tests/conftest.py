"""Shared fixtures: a tiny random model for fast maths checks, the real default model for the rest.

The tiny model borrows the default model's tokenizer, so both share one vocabulary and the same
tokenisation traps (no BOS, ``<|im_end|>`` as padding).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def default_model_dir() -> str:
    from biasaudit.models import resolve_model_path

    path, _ = resolve_model_path("default")
    return path


@pytest.fixture(scope="session")
def tokenizer(default_model_dir: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def build_tiny_model(
    vocab_size: int, seed: int = 0, *, heads: int = 4, kv_heads: int = 2, attn_implementation: str | None = None
):
    """A 2-layer Llama with random weights: same code paths as the real model, milliseconds per call.

    ``heads`` query heads read ``kv_heads`` key/value heads (grouped-query attention when fewer).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=0.2,  # larger than default so predictions are far from uniform
    )
    if attn_implementation is None:
        model = LlamaForCausalLM(config).eval()
    else:
        model = LlamaForCausalLM._from_config(config, attn_implementation=attn_implementation).eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    return build_tiny_model(len(tokenizer))


@pytest.fixture
def tiny_backend(tiny_model, tokenizer):
    from biasaudit.backend.hf import HFBackend

    return HFBackend(tiny_model, tokenizer, progress=False, min_prefix_tokens=4, min_reuse_saving=0)


@pytest.fixture(scope="session")
def default_backend():
    from biasaudit.backend.hf import HFBackend

    return HFBackend.from_spec("default", progress=False)


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    """Tests never reach for the network: the hub is unreachable here anyway, and this keeps it fast."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


def shared_data_or_skip(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: the shared datasets live beside the repo in CI only")
    return path


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ScriptedBackend:
    """A backend whose label log-probs come from ``fn(prompt, labels) -> sequence of K log-probs``.

    For known-answer tests of methods: the numbers are ours, so the expected result is exact.
    """

    name, n_layers, hidden_size = "scripted", 1, 1

    def __init__(self, fn):
        self.fn = fn
        self.calls: list[dict] = []

    def label_log_probs(
        self, prompts, labels, *, mode="first_token", length_normalize=False, apply_chat_template=False
    ):
        self.calls.append({"prompts": list(prompts), "labels": list(labels), "mode": mode, "chat": apply_chat_template})
        import numpy as np

        return np.array([list(self.fn(p, list(labels))) for p in prompts], dtype=np.float64)


@pytest.fixture
def scripted():
    """``scripted(fn)`` builds a ScriptedBackend (see its docstring)."""
    return ScriptedBackend


def save_split_sign_sae(path: Path, d_in: int, layer: int) -> Path:
    """A lossless ReLU SAE (latents relu(x) and relu(-x)) reading ``layer``, saved in sae-lens format:
    a planted direction survives encoding, so SAE-space scores have known answers."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from biasaudit.concepts.sae import layer_to_hook

    config = StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, metadata=SAEMetadata(hook_name=layer_to_hook(layer)))
    sae = StandardSAE(config)
    with torch.no_grad():
        eye = torch.eye(d_in)
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save_model(path)
    return path


@pytest.fixture(scope="session")
def tiny_vlm_dirs(tmp_path_factory, default_model_dir: str) -> dict[str, Path]:
    """Folders holding a tiny random LLaVA and a tiny random Idefics3 (saved once per session)."""
    from biasaudit.lvlm.tiny_models import build_tiny_vlm

    root = tmp_path_factory.mktemp("tiny_vlms")
    return {family: build_tiny_vlm(family, root / family, default_model_dir) for family in ("llava", "idefics3")}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tiny_model, tokenizer) -> Path:
    """An audit run folder for the report tests: the text suites that need no model knowledge (and the
    traditional benchmarks where the data are present), on the tiny random model, samples logged."""
    from biasaudit.audit import RunConfig, run_audit
    from biasaudit.backend.hf import HFBackend
    from biasaudit.backend.spec import BackendSpec

    backend = HFBackend(tiny_model, tokenizer, progress=False)
    metrics = (
        ["crows_pairs", "bbq", "stereoset", "winobias", "winogender"] if (SHARED_DATA / "crows_pairs").is_dir() else []
    )
    suites = ["yesno_prior", "negbias", *metrics]
    config = RunConfig(
        backend=BackendSpec(model="tiny"),
        suites=suites,
        limit=24,
        data_dir=str(SHARED_DATA),
        log_samples=True,
    )
    out = tmp_path_factory.mktemp("run")
    run_audit(config, out, backend=backend)
    return out
