"""Shared-prefix attention: the same numbers as one softmax over [prefix | suffix], and a clear fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_tiny_model

from biasaudit.backend import prefix_attention as pa
from biasaudit.backend.hf import HFBackend

# Eight demonstrations (a few-shot prefix of ~150 tokens) and queries of very different lengths, so the
# suffix rows are right padded to different widths.
DEMOS = "".join(
    f"Review: {text}\nSentiment: {label}\n\n"
    for text, label in [
        ("a warm, funny and moving film", "positive"),
        ("dull, slow and far too long", "negative"),
        ("the cast is wonderful", "positive"),
        ("i wanted my money back", "negative"),
        ("a triumph of style over nothing at all", "negative"),
        ("smart, tender and beautifully shot", "positive"),
        ("the plot makes no sense whatsoever", "negative"),
        ("one of the best films of the year", "positive"),
    ]
)
QUERIES = [
    "fine",
    "not good",
    "loved every minute of it, and so did my children, who are hard to please",
    "an absolute mess of a script, from start to end",
    "so-so",
]
PROMPTS = [f"{DEMOS}Review: {q}\nSentiment:" for q in QUERIES]
LABELS = [" positive", " negative", " somewhere in between"]
TOLERANCE = 2e-5


def reference_attention(query, key, value, keep, scaling):
    """Softmax attention over all keys, query heads reading KV head h // group; keep: (rows, S, K) bool."""
    group = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    scores = (query.double() @ key.double().transpose(2, 3)) * scaling
    scores = scores.masked_fill(~keep[:, None], float("-inf"))
    return (scores.softmax(dim=-1) @ value.double()).transpose(1, 2)


@pytest.mark.parametrize("fused", [True, False])
def test_cascade_equals_one_softmax_over_prefix_and_suffix(fused, monkeypatch):
    """Known answer: GQA (6 query heads on 2 KV heads), causal suffix, right padding of different lengths."""
    if not fused:
        monkeypatch.setattr(pa, "_CPU_FLASH", None)
    torch.manual_seed(0)
    rows, heads, kv_heads, p, s, d = 3, 6, 2, 11, 5, 8
    query = torch.randn(rows, heads, s, d)
    key, value = torch.randn(rows, kv_heads, s, d), torch.randn(rows, kv_heads, s, d)
    prefix_key, prefix_value = torch.randn(1, kv_heads, p, d), torch.randn(1, kv_heads, p, d)
    lengths = torch.tensor([5, 3, 1])
    padding = torch.arange(s)[None, :] < lengths[:, None]  # (rows, S): real key tokens
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    mask = (causal[None] & padding[:, None, :])[:, None]  # sdpa's boolean format (rows, 1, S, S)
    got = pa.cascade_attention(
        query, key, value, pa._additive_mask(mask, rows, s, query), prefix_key, prefix_value, d**-0.5
    )
    keep = torch.cat([torch.ones(rows, s, p, dtype=torch.bool), mask[:, 0]], dim=2)
    want = reference_attention(
        query, torch.cat([prefix_key.expand(rows, -1, -1, -1), key], 2),
        torch.cat([prefix_value.expand(rows, -1, -1, -1), value], 2), keep, d**-0.5,
    )  # fmt: skip
    assert got.shape == (rows, s, heads, d)
    for r, n in enumerate(lengths.tolist()):  # real query positions; padding queries are never read
        torch.testing.assert_close(got[r, :n].double(), want[r, :n], atol=1e-6, rtol=0)
    # No mask means causal; a query that sees no suffix key at all (left padding) reads the prefix only.
    no_mask = pa.cascade_attention(
        query, key, value, pa._additive_mask(None, rows, s, query), prefix_key, prefix_value, d**-0.5
    )
    torch.testing.assert_close(no_mask[0], got[0])
    blind = torch.zeros(rows, 1, s, s, dtype=torch.bool)
    only_prefix = pa.cascade_attention(
        query, key, value, pa._additive_mask(blind, rows, s, query), prefix_key, prefix_value, d**-0.5
    )
    want_prefix = reference_attention(
        query, prefix_key, prefix_value, torch.ones(rows, s, p, dtype=torch.bool), d**-0.5
    )
    torch.testing.assert_close(only_prefix.double(), want_prefix, atol=1e-6, rtol=0)


def tiny_gqa_model(vocab_size: int, attn_implementation: str = "sdpa"):
    """A 2-layer Llama, 8 query heads on 2 KV heads, random weights (no download)."""
    return build_tiny_model(vocab_size, seed=1, heads=8, kv_heads=2, attn_implementation=attn_implementation)


def three_ways(model, tokenizer, **kwargs):
    """The backend as it runs by default, with the broadcast cache instead, and with no prefix reuse."""
    options = {"progress": False, "min_prefix_tokens": 4, "min_reuse_saving": 0, **kwargs}
    return (
        HFBackend(model, tokenizer, **options),
        HFBackend(model, tokenizer, shared_prefix_attention=False, **options),
        HFBackend(model, tokenizer, prefix_reuse=False, batch_size=1, progress=False),
    )


def count_cascade_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = pa.cascade_attention

    def counting(query, *args, **kwargs):
        calls.append(query.shape[0])
        return original(query, *args, **kwargs)

    monkeypatch.setattr(pa, "cascade_attention", counting)
    return calls


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_tiny_gqa_model_scores_equal_broadcast_cache_and_no_reuse(tokenizer, monkeypatch, attn_implementation):
    model = tiny_gqa_model(len(tokenizer), attn_implementation)
    shared, broadcast, no_reuse = three_ways(model, tokenizer)
    assert shared.prefix_attention_unavailable is None
    assert broadcast.prefix_attention_unavailable == "switched off"
    calls = count_cascade_calls(monkeypatch)
    got = shared.label_log_probs(PROMPTS, LABELS, mode="full_sequence")
    assert calls and max(calls) == len(PROMPTS)  # every row of one batch read the prefix through it
    assert model.config._attn_implementation == attn_implementation  # switched back after the call
    for other in (broadcast, no_reuse):
        want = other.label_log_probs(PROMPTS, LABELS, mode="full_sequence")
        assert np.abs(got - want).max() <= TOLERANCE
    requests = [(p, label) for p in PROMPTS for label in LABELS]
    got_ll = [r.logprob for r in shared.loglikelihood(requests)]
    want_ll = [r.logprob for r in no_reuse.loglikelihood(requests)]
    assert np.abs(np.array(got_ll) - np.array(want_ll)).max() <= TOLERANCE


def test_generation_prefill_reads_the_header_through_shared_attention(tokenizer, monkeypatch):
    model = tiny_gqa_model(len(tokenizer))
    shared, broadcast, no_reuse = three_ways(model, tokenizer)
    prompts = [f"{DEMOS}Review: {q}\nSentiment:" for q in QUERIES]
    calls = count_cascade_calls(monkeypatch)
    for copies in (1, 3):
        got = shared.generate(prompts, max_new_tokens=5, num_return_sequences=copies)
        assert got == broadcast.generate(prompts, max_new_tokens=5, num_return_sequences=copies)
        assert got == no_reuse.generate(prompts, max_new_tokens=5, num_return_sequences=copies)
    assert calls


def test_models_it_cannot_serve_fall_back_to_the_broadcast_cache(tokenizer):
    from transformers import Gemma2Config, Gemma2ForCausalLM, MistralConfig, MistralForCausalLM

    small = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    heads = {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8}
    softcapped = Gemma2ForCausalLM(
        Gemma2Config(**small, **heads, sliding_window=None, layer_types=["full_attention"] * 2)
    )
    assert pa.unsupported_reason(softcapped) == "soft-capped attention logits"
    mistral = MistralForCausalLM(MistralConfig(**small, **heads, sliding_window=16))
    assert pa.unsupported_reason(mistral).startswith("sliding-window")
    flex = tiny_gqa_model(64)
    flex.config._attn_implementation = "flex_attention"
    assert "flex_attention" in pa.unsupported_reason(flex)


def test_a_model_that_fails_the_start_up_check_scores_through_the_broadcast_cache(tokenizer, monkeypatch):
    """A model whose attention would not give the broadcast cache's numbers (here: a broken cascade) is
    caught at start-up; the backend says why and reuses prefixes the old way, with the same results."""
    model = tiny_gqa_model(len(tokenizer))

    def wrong(query, key, value, *args, **kwargs):
        return torch.zeros_like(query).transpose(1, 2)

    monkeypatch.setattr(pa, "cascade_attention", wrong)
    backend, _, no_reuse = three_ways(model, tokenizer)
    assert "does not reproduce the broadcast cache" in backend.prefix_attention_unavailable
    got = backend.label_log_probs(PROMPTS, LABELS, mode="full_sequence")
    assert np.abs(got - no_reuse.label_log_probs(PROMPTS, LABELS, mode="full_sequence")).max() <= TOLERANCE


def test_switching_is_counted_and_restores_the_original_implementation(tiny_model):
    assert tiny_model.config._attn_implementation == "sdpa"
    with pa.prefix_attention(tiny_model):
        with pa.prefix_attention(tiny_model):
            assert tiny_model.config._attn_implementation == "biasaudit_prefix_sdpa"
        assert tiny_model.config._attn_implementation == "biasaudit_prefix_sdpa"
    assert tiny_model.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_default_model_shared_prefix_attention_equals_broadcast_cache_and_no_reuse(default_backend):
    shared, broadcast, no_reuse = three_ways(default_backend.model, default_backend.tokenizer)
    assert shared.prefix_attention_unavailable is None
    cfg = default_backend.model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # SmolLM2 uses grouped-query attention
    got = shared.label_log_probs(PROMPTS, LABELS[:2])
    for other in (broadcast, no_reuse):
        assert np.abs(got - other.label_log_probs(PROMPTS, LABELS[:2])).max() <= TOLERANCE
