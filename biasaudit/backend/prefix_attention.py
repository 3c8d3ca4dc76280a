"""Shared-prefix ("cascade") attention: a batch of suffixes reads one prefix's keys and values once.

Few-shot scoring runs many suffixes (queries x labels) after the same demonstrations. Handing each row
the prefix through a KV cache copies the prefix into every row (the cache's ``cat``) and again into
every query head (``repeat_kv`` for grouped-query attention). Softmax attention over the keys
``[prefix | suffix]`` splits exactly into two softmaxes that are merged by their log-sum-exp
(Hydragen, Juravsky et al. 2024, eq. 3-4; FlashInfer's cascade attention)::

    o = w_p * o_p + w_s * o_s,   w_x = exp(lse_x - lse),   lse = log(exp(lse_p) + exp(lse_s))

* ``o_p, lse_p``: every query of every row against the one prefix (1, kv_heads, P, d) -- one batched
  matmul per KV head, queries reshaped to (kv_heads, group x rows x q_len, d); no copy of the prefix.
* ``o_s, lse_s``: each row against its own suffix keys, causal and with the row's padding mask.

The function is registered in transformers' ``AttentionInterface``, so model code stays untouched:
``prefix_attention(model)`` switches the model to it for a ``with`` block, and the prefix travels as
the ``shared_prefix`` keyword of the forward call (transformers hands a forward's extra keywords to
every attention call), so concurrent calls never see each other's prefix. Without that keyword the
function is the implementation it replaced, so a plain forward in another thread is unaffected.
The caller runs the suffix tokens without a cache, position ids starting at the prefix length.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

# The attention implementations this one can stand in for, with the name it is registered under for
# each: the mask format (sdpa: boolean or None; eager: additive floats) follows the one replaced.
_WRAPPED = {"sdpa": "biasaudit_prefix_sdpa", "eager": "biasaudit_prefix_eager"}
_LOCK = threading.Lock()
_ACTIVE: dict[int, list[Any]] = {}  # id(config) -> [original implementation, open ``with`` blocks]


@dataclass(frozen=True)
class SharedPrefix:
    """The prefix every row of a batch continues: per layer (keys, values), each (1, kv_heads, P, head_dim)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    # The suffix mask as additions, built by the first layer of a forward and read by the others.
    _bias: dict[int, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def suffix_bias(self, attention_mask: torch.Tensor | None, query: torch.Tensor) -> torch.Tensor:
        """``_additive_mask`` of this forward's mask (every layer gets the same mask object)."""
        key = id(attention_mask)
        if key not in self._bias:
            self._bias.clear()
            self._bias[key] = _additive_mask(attention_mask, query.shape[0], query.shape[2], query)
        return self._bias[key]


def unsupported_reason(model: Any) -> str | None:
    """Why ``model``'s attention cannot be served by the cascade (None when it can, as far as the config says).

    The decomposition is exact for plain scaled-dot-product softmax attention. Sliding windows drop
    prefix keys, soft-capping and attention sinks change the softmax, and other implementations
    (flash, flex, paged) take other masks; those models keep the broadcast cache.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "sliding_window", None) or any(t != "full_attention" for t in layer_types):
        return "sliding-window (or other not fully global) attention layers"
    for name in ("attn_logit_softcapping", "attention_logit_softcapping"):
        if getattr(config, name, None):
            return "soft-capped attention logits"
    if any(hasattr(m, "sinks") for m in model.modules()):
        return "attention sinks"
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in _WRAPPED:
        return f"attention implementation {implementation!r} (only {sorted(_WRAPPED)} are wrapped)"
    if hasattr(model, "_can_set_attn_implementation") and not model._can_set_attn_implementation():
        return f"{type(model).__name__} does not dispatch through transformers' AttentionInterface"
    return None


@contextmanager
def prefix_attention(model: Any) -> Iterator[None]:
    """Within the block, ``model``'s attention honours a ``shared_prefix=SharedPrefix(...)`` forward keyword.

    Nested and concurrent blocks on one model are counted; the last to leave restores the original.
    """
    _register()
    config = model.config
    with _LOCK:
        state = _ACTIVE.get(id(config))
        if state is None:
            original = config._attn_implementation
            model.set_attn_implementation(_WRAPPED[original])
            state = _ACTIVE[id(config)] = [original, 0]
        state[1] += 1
    try:
        yield
    finally:
        with _LOCK:
            state[1] -= 1
            if state[1] == 0:
                del _ACTIVE[id(config)]
                model.set_attn_implementation(state[0])


def cascade_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    suffix_bias: torch.Tensor,
    prefix_key: torch.Tensor,
    prefix_value: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """Attention of suffix queries over [shared prefix | own suffix], as one softmax would give it.

    query: (rows, heads, S, d); key, value: (rows, kv_heads, S, d), the rows' own suffix tokens;
    suffix_bias: (rows, 1, S, S) added to the suffix scores (causal and padding, see ``_additive_mask``);
    prefix_key, prefix_value: (1, kv_heads, P, d). Returns (rows, S, heads, d).
    """
    rows, heads, s, d = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    # Query head h reads KV head h // group (transformers' repeat_kv), so (rows, kv_heads, group, S, d).
    q = query.reshape(rows, kv_heads, group, s, d)

    # (a) Every query against the one prefix: (1, kv_heads, group x rows x S, d) against (1, kv_heads, P, d).
    q_p = q.permute(1, 2, 0, 3, 4).reshape(1, kv_heads, group * rows * s, d)
    o_p, lse_p = _attend(q_p, prefix_key, prefix_value, None, scaling)
    o_p = o_p.reshape(kv_heads, group, rows, s, d).permute(2, 0, 1, 3, 4)
    lse_p = lse_p.reshape(kv_heads, group, rows, s).permute(2, 0, 1, 3)

    # (b) Each row against its own suffix, causal and padded: (rows, kv_heads, group x S, d) against
    # (rows, kv_heads, S, d).
    bias = suffix_bias.repeat(1, 1, group, 1)
    o_s, lse_s = _attend(q.reshape(rows, kv_heads, group * s, d), key, value, bias, scaling)
    o_s = o_s.reshape(rows, kv_heads, group, s, d)
    lse_s = lse_s.reshape(rows, kv_heads, group, s)

    # Merge the two softmaxes by their log-sum-exp (Hydragen eq. 4).
    lse = torch.logaddexp(lse_p, lse_s)
    out = o_p * torch.exp(lse_p - lse).unsqueeze(-1) + o_s * torch.exp(lse_s - lse).unsqueeze(-1)
    return out.reshape(rows, heads, s, d).transpose(1, 2).to(query.dtype).contiguous()


def _attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None, scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(query @ key^T * scaling + bias) @ value, its log-sum-exp (..., q_len) in float32).

    query: (batch, heads, q_len, d); key, value: (batch, heads, k_len, d); bias: (batch, 1, q_len, k_len).
    On a CPU, PyTorch's fused flash-attention kernel returns both without materialising the scores
    (half the time of the explicit version on the few-shot workload); elsewhere the explicit version.
    """
    if query.device.type == "cpu" and _CPU_FLASH is not None:
        out, lse = _CPU_FLASH(query, key, value, 0.0, False, attn_mask=bias, scale=scaling)
        return out.float(), lse
    scores = torch.matmul(query, key.transpose(-1, -2)).float().mul_(scaling)
    if bias is not None:
        scores = scores.add_(bias)
    top = scores.amax(dim=-1, keepdim=True)
    weights = scores.sub_(top).exp_()
    total = weights.sum(dim=-1, keepdim=True)
    out = torch.matmul(weights.to(value.dtype), value).float().div_(total)
    return out, (top + total.log()).squeeze(-1)


# PyTorch's CPU flash attention, which also returns the log-sum-exp (a private op, so looked up with care).
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _additive_mask(attention_mask: torch.Tensor | None, rows: int, s: int, query: torch.Tensor) -> torch.Tensor:
    """The suffix mask as additions to the scores, (rows, 1, S, S), in the query's dtype.

    A masked score gets the dtype's lowest value rather than -inf: a query with no visible suffix key
    (a left-padding position) then has lse_s near that value and weight 0, instead of NaN.
    """
    low = torch.finfo(query.dtype).min
    if attention_mask is None:
        allowed = torch.ones((s, s), dtype=torch.bool, device=query.device).tril()
        attention_mask = allowed.expand(rows, 1, s, s)
    if attention_mask.dtype == torch.bool:
        bias = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device)
        bias = bias.masked_fill_(~attention_mask, low)
    else:
        bias = attention_mask.to(query.dtype).clamp(min=low)
    return bias[..., -s:, -s:].expand(rows, 1, s, s)


def _attention_forward() -> Any:
    """The ``AttentionInterface`` function (see the module docstring)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def forward(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        shared_prefix: SharedPrefix | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        if shared_prefix is None:
            # SDPA takes either mask format (eager's additive floats too), so it serves both.
            sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
            return sdpa(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
        prefix_key, prefix_value = shared_prefix.kv[module.layer_idx]  # type: ignore[index]
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        bias = shared_prefix.suffix_bias(attention_mask, query)
        out = cascade_attention(query, key, value, bias, prefix_key, prefix_value, scale)
        return out, None

    return forward


def _register() -> None:
    """Register the wrapped implementations (and the masks they take) with transformers, once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    for original, name in _WRAPPED.items():
        if name not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
            AttentionInterface.register(name, _attention_forward())
            AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])


__all__ = ["SharedPrefix", "cascade_attention", "prefix_attention", "unsupported_reason"]
