"""Model resolution: specs, typed errors, device/dtype defaults, atomic GGUF conversion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from biasaudit import models
from biasaudit.errors import HubUnreachableError, ModelNotFoundError


def test_missing_paths_raise_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        models.load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="GGUF"):
        models.load_model(str(tmp_path / "model.gguf"))
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        models.load_model(str(tmp_path))


def test_unknown_hub_id_offline_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(HubUnreachableError, match=r"unreachable; pass a local model folder or a \.gguf file"):
        models.load_model("some-org/some-model")


def test_hub_reachable_respects_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.hub_reachable() is False


def test_device_and_dtype_defaults():
    assert models.resolve_device("cpu") == torch.device("cpu")
    assert models.resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert models.resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert models.resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        models.resolve_dtype("int3", torch.device("cpu"))


def test_local_folder_loads_with_trust_remote_code_off(tmp_path, tiny_model, tokenizer):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = models.load_model(str(tmp_path), device="cpu")
    assert loaded.source == "local" and loaded.dtype == torch.float32
    assert loaded.tokenizer.pad_token_id is not None
    assert not loaded.model.training
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(loaded.model(ids).logits, tiny_model(ids).logits)


def test_interrupted_gguf_conversion_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("BIASAUDIT_CACHE", str(tmp_path))
    gguf = models.default_gguf_path()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        models.convert_gguf(gguf)
    target = models.converted_gguf_dir(gguf)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no half-written temporary folder either


def test_default_model_is_cached_as_safetensors(default_model_dir):
    folder = Path(default_model_dir)
    assert (folder / "model.safetensors").is_file()
    marker = json.loads((folder / "biasaudit_source.json").read_text())
    assert marker["gguf"].endswith(models.DEFAULT_MODEL_FILE)
    info = models.describe_default()
    assert info["installed"] and info["cached"] and info["converted"] == default_model_dir


def test_default_model_loads_from_cache(default_model_dir):
    loaded = models.load_model("default")
    assert loaded.source == "default" and loaded.name == models.DEFAULT_MODEL_NAME
    assert loaded.path == default_model_dir
    assert loaded.model.config.num_hidden_layers == 30
    assert loaded.tokenizer("hello").input_ids[0] != loaded.tokenizer.bos_token_id  # no BOS added
