"""A short hash that identifies a model's weights: caches of activations and results are keyed by it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

# Config entries that say where or when a model was saved, not what it computes.
# ``save_pretrained`` fills in architectures and dtype; the dtype that matters is hashed from the weights.
_CONFIG_KEYS_NOT_HASHED = frozenset(
    {"_name_or_path", "transformers_version", "_commit_hash", "architectures", "torch_dtype", "dtype"}
)


def weights_fingerprint(model: Any) -> str:
    """Hash of the config and a sample of every weight tensor: two checkpoints of one architecture differ.

    Sampling (first and last 64 values of each tensor, plus its sum) keeps this to milliseconds.
    """
    config = {k: v for k, v in model.config.to_dict().items() if k not in _CONFIG_KEYS_NOT_HASHED}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.inference_mode():
        for pname, param in sorted(model.state_dict().items()):
            flat = param.detach().reshape(-1).float().cpu()
            digest.update(f"{pname}:{param.dtype}".encode())
            digest.update(torch.cat([flat[:64], flat[-64:], flat.sum().reshape(1)]).numpy().tobytes())
    return digest.hexdigest()[:16]
