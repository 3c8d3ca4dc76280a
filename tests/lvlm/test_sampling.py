"""Debias sampling (VDD / VCD): the rule's known answers, batched+cached decoding == one-row uncached decoding,
sampled decoding stays in the plausible set, errors, and the diffusion noise of VCD's reference image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import build_tiny_model
from transformers import LogitsProcessorList

from biasaudit.backend.vlm_noise import diffuse, diffusion_alpha_bar, diffusion_noise
from biasaudit.lvlm.sampling import DebiasSamplingProcessor, ReferenceStreamError, debias_logits

NEG_INF = -math.inf
QUESTIONS = ["Is there a dog?", "What colour is the large car parked next to the old red house?", "Describe it."]
IMAGE_PREFIX = "<image> A photo of a busy street with people, cars and shops. "


# -- (a) the rule -------------------------------------------------------------------------------------------
def _exact_processor(alpha: float, beta: float, reference: torch.Tensor) -> DebiasSamplingProcessor:
    return DebiasSamplingProcessor(alpha=alpha, beta=beta).bind_callable(lambda input_ids: reference)


LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0, 3.0], [0.5, 0.5, 0.5, 0.5, 0.5]])
REF = torch.tensor([[1.0, 2.0, -1.0, 0.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0]])


def test_known_answer_with_plausibility_cut():
    out = _exact_processor(1.0, 0.1, REF)(torch.zeros((2, 3), dtype=torch.long), LOGITS.clone())
    # Row 0: p_i / p_max = exp(l_i - 3) is 0.37, 0.14, 0.05, 0.02, 1 -> tokens 0, 1, 4 pass beta = 0.1.
    expected = torch.tensor(
        [[2 * 2.0 - 1.0, 2 * 1.0 - 2.0, NEG_INF, NEG_INF, 2 * 3.0 - 4.0], [1.0, 0.0, -1.0, -2.0, -3.0]]
    )
    torch.testing.assert_close(out, expected)
    alpha = 0.5
    out = _exact_processor(alpha, 0.1, REF)(torch.zeros((2, 3), dtype=torch.long), LOGITS.clone())
    torch.testing.assert_close(out[1], 1.5 * LOGITS[1] - 0.5 * REF[1])


def test_beta_zero_keeps_every_token_and_alpha_zero_keeps_the_logits():
    ids = torch.zeros((2, 3), dtype=torch.long)
    torch.testing.assert_close(_exact_processor(1.0, 0.0, REF)(ids, LOGITS.clone()), 2 * LOGITS - REF)
    out = _exact_processor(0.0, 0.1, REF)(ids, LOGITS.clone())
    torch.testing.assert_close(out, LOGITS.masked_fill(torch.tensor([[0, 0, 1, 1, 0], [0] * 5]).bool(), NEG_INF))


def test_masked_tokens_stay_masked_even_against_a_masked_reference():
    logits = torch.tensor([[1.0, NEG_INF, 0.0]])
    out = debias_logits(logits, torch.tensor([[0.0, NEG_INF, 0.0]]), alpha=1.0, beta=0.0)
    torch.testing.assert_close(out, torch.tensor([[2.0, NEG_INF, 0.0]]))


def test_plausibility_matches_the_probability_definition():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    out = debias_logits(logits, torch.randn(4, 50), alpha=1.0, beta=0.1)
    probs = logits.softmax(-1)
    assert torch.equal(torch.isfinite(out), probs >= 0.1 * probs.max(-1, keepdim=True).values)


# -- (b) batched, cached, left-padded decoding == one row at a time without cache ---------------------------
def _left_pad(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return {"input_ids": ids, "attention_mask": mask}


def _prompts(tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    real = [tokenizer(IMAGE_PREFIX + q, add_special_tokens=False).input_ids for q in QUESTIONS]
    ref = [tokenizer(q, add_special_tokens=False).input_ids for q in QUESTIONS]
    assert len({len(r) for r in real}) == 3 and len({len(r) for r in ref}) == 3
    return real, ref


def _last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


def _uncached_greedy(model, real: list[int], ref: list[int], steps: int, alpha: float, beta: float) -> list[int]:
    """The rule written out independently: full forwards, no cache, no padding, one row."""
    real, ref, chosen = list(real), list(ref), []
    for _ in range(steps):
        logits, ref_logits = _last_logits(model, real), _last_logits(model, ref)
        probs = logits.softmax(-1)
        keep = probs >= beta * probs.max()
        scores = torch.where(keep, (1 + alpha) * logits - alpha * ref_logits, torch.tensor(NEG_INF))
        token = int(scores.argmax())
        chosen.append(token)
        real.append(token)
        ref.append(token)
    return chosen


def _generated(out: torch.Tensor, prompt_width: int, eos_id: int | None) -> list[list[int]]:
    rows = []
    for row in out[:, prompt_width:].tolist():
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id) + 1]  # generate pads a finished row
        rows.append(row)
    return rows


def _tiny_gpt2(tokenizer, seed: int = 0):
    """GPT-2 has absolute position embeddings: left-pad positions are wrong unless passed explicitly (RoPE models
    like Llama only see relative positions, so they cannot catch that)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        initializer_range=0.2,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    return GPT2LMHeadModel(config).eval().requires_grad_(False)


@pytest.mark.parametrize(("arch", "alpha", "beta"), [("llama", 1.0, 0.1), ("llama", 2.5, 0.0), ("gpt2", 1.0, 0.1)])
def test_batched_cached_greedy_equals_unbatched_uncached(tokenizer, arch, alpha, beta):
    model = build_tiny_model(len(tokenizer), seed=3) if arch == "llama" else _tiny_gpt2(tokenizer)
    pad = tokenizer.pad_token_id
    real, ref = _prompts(tokenizer)
    real_inputs, ref_inputs = _left_pad(real, pad), _left_pad(ref, pad)
    proc = DebiasSamplingProcessor(alpha=alpha, beta=beta).bind(model, ref_inputs)
    kwargs = {"do_sample": False, "max_new_tokens": 6, "pad_token_id": pad}
    out = model.generate(**real_inputs, logits_processor=LogitsProcessorList([proc]), **kwargs)
    eos = model.generation_config.eos_token_id
    got = _generated(out, real_inputs["input_ids"].shape[1], eos)
    for i in range(3):
        expected = _uncached_greedy(model, real[i], ref[i], 6, alpha, beta)
        assert got[i] == expected[: len(got[i])], f"row {i}"
    plain = model.generate(**real_inputs, **kwargs)
    assert not torch.equal(plain, out), "the debiasing changed nothing: the test would not catch a broken stream"
    # The same processor serves a second generate(): the reference stream starts afresh.
    again = model.generate(**real_inputs, logits_processor=LogitsProcessorList([proc]), **kwargs)
    assert torch.equal(again, out)


# -- (c) sampled decoding -----------------------------------------------------------------------------------
def test_sampled_tokens_lie_in_the_plausible_set(tokenizer):
    model = build_tiny_model(len(tokenizer), seed=4)
    pad, beta = tokenizer.pad_token_id, 0.1
    real, ref = _prompts(tokenizer)
    real_inputs = _left_pad(real, pad)
    proc = DebiasSamplingProcessor(alpha=1.0, beta=beta).bind(model, _left_pad(ref, pad))
    torch.manual_seed(0)
    out = model.generate(
        **real_inputs,
        logits_processor=LogitsProcessorList([proc]),
        do_sample=True,
        top_k=0,
        max_new_tokens=8,
        pad_token_id=pad,
    )
    got = _generated(out, real_inputs["input_ids"].shape[1], model.generation_config.eos_token_id)
    assert all(len(g) > 0 for g in got)
    for i, tokens in enumerate(got):
        prefix = list(real[i])
        for token in tokens:
            probs = _last_logits(model, prefix).softmax(-1)
            assert probs[token] >= beta * probs.max() * (1 - 1e-5), f"row {i}: token {token} is implausible"
            prefix.append(token)


# -- (d) errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"alpha": -0.1}, "alpha"), ({"alpha": math.inf}, "alpha"), ({"beta": 1.5}, "beta"), ({"beta": -0.1}, "beta")],
)
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DebiasSamplingProcessor(**kwargs)
    with pytest.raises(ValueError, match="unknown reference"):
        DebiasSamplingProcessor(reference="gray")


def test_unbound_processor_refuses_to_run():
    with pytest.raises(ValueError, match="not bound"):
        DebiasSamplingProcessor()(torch.zeros((1, 2), dtype=torch.long), torch.zeros((1, 5)))


def test_batch_size_and_padding_errors(tokenizer):
    model = build_tiny_model(len(tokenizer), seed=0)
    pad = tokenizer.pad_token_id
    real, ref = _prompts(tokenizer)
    proc = DebiasSamplingProcessor().bind(model, _left_pad(ref[:2], pad))
    with pytest.raises(ReferenceStreamError, match="row for row"):
        model.generate(**_left_pad(real, pad), logits_processor=LogitsProcessorList([proc]), max_new_tokens=2)
    right = _left_pad(ref, pad)
    right["attention_mask"] = right["attention_mask"].flip(1)
    with pytest.raises(ValueError, match="right-padded"):
        DebiasSamplingProcessor().bind(model, right)
    wrong_vocab = DebiasSamplingProcessor().bind_callable(lambda ids: torch.zeros((1, 4)))
    with pytest.raises(ValueError, match="shape"):
        wrong_vocab(torch.zeros((1, 2), dtype=torch.long), torch.zeros((1, 5)))


def test_vcd_preset():
    proc = DebiasSamplingProcessor.vcd()
    assert (proc.alpha, proc.beta, proc.reference) == (1.0, 0.1, "noise")


# -- (e) VCD's noise image ----------------------------------------------------------------------------------
def _alpha_bar_by_hand(step: int, schedule: str, n_steps: int = 1000) -> float:
    product = 1.0
    for i in range(step + 1):
        if schedule == "vcd":  # VCD's vcd_add_noise.py: sigmoid(linspace(-6, 6)) * (5e-3 - 1e-5) + 1e-5
            beta = 1.0 / (1.0 + math.exp(-(-6.0 + 12.0 * i / (n_steps - 1)))) * (0.5e-2 - 1e-5) + 1e-5
        else:  # DDPM: linspace(1e-4, 0.02)
            beta = 1e-4 + (0.02 - 1e-4) * i / (n_steps - 1)
        product *= 1.0 - beta
    return product


def test_diffusion_noise_is_seeded_uint8():
    image = np.random.default_rng(0).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    a, b, c = diffusion_noise(image, seed=1), diffusion_noise(image, seed=1), diffusion_noise(image, seed=2)
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="uint8"):
        diffusion_noise(image.astype(np.float32))
    with pytest.raises(ValueError, match="step"):
        diffusion_noise(image, step=1000)


@pytest.mark.parametrize("schedule", ["vcd", "linear"])
def test_step_zero_is_almost_the_image(schedule):
    image = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    diff = np.abs(diffusion_noise(image, step=0, schedule=schedule).astype(int) - image.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8


@pytest.mark.parametrize("schedule", ["vcd", "linear"])
def test_closed_form_mean_and_variance_at_step_500(schedule):
    alpha_bar = _alpha_bar_by_hand(500, schedule)
    assert diffusion_alpha_bar(500, schedule=schedule) == pytest.approx(alpha_bar, rel=1e-9)
    x0 = np.full((1000, 1000), 0.3)
    xt = diffuse(x0, step=500, schedule=schedule, seed=0)
    assert xt.mean() == pytest.approx(math.sqrt(alpha_bar) * 0.3, abs=3e-3)
    assert xt.var() == pytest.approx(1 - alpha_bar, rel=1e-2)


def test_noise_image_quantiles_match_the_closed_form():
    # Quantiles survive the clip to [0, 255] (they stay inside it), so they test the uint8 path exactly.
    alpha_bar = _alpha_bar_by_hand(500, "vcd")
    noised = diffusion_noise(np.full((512, 512, 3), 128, dtype=np.uint8), step=500, seed=0).astype(np.float64)
    centre = (math.sqrt(alpha_bar) * (128 / 127.5 - 1) + 1) * 127.5
    half_iqr = 0.6744897501960817 * math.sqrt(1 - alpha_bar) * 127.5
    q25, q50, q75 = np.quantile(noised, [0.25, 0.5, 0.75])
    assert q50 == pytest.approx(centre, abs=1.0)
    assert (q75 - q25) / 2 == pytest.approx(half_iqr, abs=1.0)
