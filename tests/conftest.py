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


def build_tiny_model(vocab_size: int, seed: int = 0):
    """A 2-layer Llama with random weights: same code paths as the real model, milliseconds per call."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=0.2,  # larger than default so predictions are far from uniform
    )
    model = LlamaForCausalLM(config).eval()
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


_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_vlm(family: str, folder: Path, tokenizer_dir: str, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer VLM (``llava`` or ``idefics3``) with its processor to ``folder``.

    The default model's tokenizer plus the family's image tokens, the ``*Pil`` image processors (torchvision
    must stay uninstalled here) and 32x32 images: loads through ``AutoProcessor`` and
    ``AutoModelForImageTextToText`` like a hub checkpoint, with no download.
    """
    import transformers
    from transformers import AutoTokenizer, LlamaConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "initializer_range": 0.2,
    }
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    torch.manual_seed(seed)
    if family == "llava":
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        config = transformers.LlavaConfig(
            vision_config=transformers.CLIPVisionConfig(**vision, image_size=32, patch_size=8),
            text_config=LlamaConfig(vocab_size=len(tok), **text),
            image_token_id=tok.convert_tokens_to_ids("<image>"),
            vision_feature_layer=-1,
        )
        model = transformers.LlavaForConditionalGeneration(config)
        image_processor = transformers.CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
        processor = transformers.LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            patch_size=8,
            vision_feature_select_strategy="default",
            image_token="<image>",
            chat_template=_TINY_CHAT_TEMPLATE,
            num_additional_image_tokens=1,
        )
    elif family == "idefics3":
        tok.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<image>", "<global-img>"]})
        config = transformers.Idefics3Config(
            vision_config=transformers.Idefics3VisionConfig(**vision, image_size=32, patch_size=8).to_dict(),
            text_config=LlamaConfig(vocab_size=len(tok), **text).to_dict(),
            image_token_id=tok.convert_tokens_to_ids("<image>"),
            scale_factor=2,
        )
        model = transformers.Idefics3ForConditionalGeneration(config)
        image_processor = transformers.Idefics3ImageProcessorPil(
            size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=False
        )
        processor = transformers.Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tok,
            image_seq_len=4,
            chat_template=_TINY_CHAT_TEMPLATE.replace("<image>\\n", "<image>"),
        )
    else:
        raise ValueError(f"unknown tiny VLM family {family!r}")
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vlm_dirs(tmp_path_factory, default_model_dir: str) -> dict[str, Path]:
    """Folders holding a tiny random LLaVA and a tiny random Idefics3 (saved once per session)."""
    root = tmp_path_factory.mktemp("tiny_vlms")
    return {family: build_tiny_vlm(family, root / family, default_model_dir) for family in ("llava", "idefics3")}
