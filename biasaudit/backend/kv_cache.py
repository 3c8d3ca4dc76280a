"""KV caches as plain tensors and back: what prefix reuse (scoring and generation) is built on."""

from __future__ import annotations

from typing import Any

import torch


def cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer from a transformers cache object of any recent version."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]


def broadcast_cache(kv: list[tuple[torch.Tensor, torch.Tensor]], repeats: int, config: Any) -> Any:
    """A fresh cache holding each cached row's keys and values ``repeats`` times, copies adjacent.

    kv: per layer (keys, values), each (rows, heads, length, head_dim); the cache has rows x repeats.
    A one-row prefix is ``expand``-ed (views, not copies); several rows are ``repeat_interleave``-d.
    """
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=config)
    except TypeError:  # older transformers
        cache = DynamicCache()

    def repeat(x: torch.Tensor) -> torch.Tensor:
        if repeats == 1:
            return x
        if x.shape[0] == 1:
            return x.expand(repeats, *x.shape[1:])
        return x.repeat_interleave(repeats, dim=0)

    for layer_idx, (k, v) in enumerate(kv):
        cache.update(repeat(k), repeat(v), layer_idx)
    return cache


def output_cache(out: Any) -> Any:
    """The KV cache of a forward output (``cache`` in newer transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values
