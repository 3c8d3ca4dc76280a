"""Debias sampling for LVLMs at decode time, as a transformers ``LogitsProcessor`` (docs/methods.md §5).

Visual debias decoding (VDD; Zhang et al. 2024, "Debiasing Multimodal Large Language Models", arXiv 2403.05262)
and visual contrastive decoding (VCD; Leng et al., CVPR 2024) share one rule. With l(x, v) the next-token logits
given the prompt x and the real image v, and l_ref the logits of the same model given a reference input (the
prompt with the image removed for VDD, a diffusion-noised image for VCD; VCD eq. 3-4),

    logits' = (1 + α) · l(x, v) − α · l_ref          on  V_head = {y : p(y | x, v) ≥ β · max_w p(w | x, v)},
    logits' = −inf                                    elsewhere (the adaptive plausibility constraint),

so tokens the image makes likelier than the language prior alone gain, and the cut keeps the contrast from
promoting tokens the real input finds implausible. Defaults α = 1, β = 0.1 (both papers).

The official code runs at batch size 1 with sampling only. Here the reference logits come from a *reference
stream*: the same model run on the reference inputs (left-padded, one row per row of the main batch) with its own
KV cache, advanced by the token the main stream chose at each step, all rows in one forward per step. So the
processor works batched, greedy and sampled, and costs one extra single-token forward per step.

Order in ``generate``: transformers applies user logits processors after its own processors (repetition penalty,
min length, ...) and before the sampling warpers (temperature, top-k, top-p, min-p): in
``GenerationMixin._get_logits_processor`` the user list is merged in (``_merge_criteria_processor_list``) before
the ``if generation_config.do_sample`` block appends the warpers (checked in transformers 5.x). The rule therefore
sees unwarped logits, as in the papers, and a temperature applies to the debiased logits.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from transformers import LogitsProcessor

from biasaudit.errors import InvalidRequestError
from biasaudit.lvlm.posthoc import REFERENCES

ReferenceFn = Callable[[torch.Tensor], torch.Tensor]


class ReferenceStreamError(InvalidRequestError):
    """The reference stream cannot follow the main batch (unbound processor, batch sizes differ...)."""


def debias_logits(
    logits: torch.Tensor, reference_logits: torch.Tensor, alpha: float = 1.0, beta: float = 0.1
) -> torch.Tensor:
    """The VDD/VCD rule on one step's logits (batch, vocab): (1+α)·l − α·l_ref where p ≥ β·max p, −inf elsewhere.

    The plausibility test p_i ≥ β·max p on softmax(logits) is done as l_i ≥ max l + log β, which is the same test
    (softmax is monotone and shares one normaliser per row) without underflow of tiny probabilities. β = 0 keeps
    every token; α = 0 gives back ``logits`` on the plausible set. A token already at −inf (masked by an earlier
    processor) stays −inf even when its reference logit is −inf too.
    """
    if logits.shape != reference_logits.shape:
        raise InvalidRequestError(
            f"logits {tuple(logits.shape)} and reference logits {tuple(reference_logits.shape)} differ in shape; "
            "the reference must come from the same model (same vocabulary) and the same batch"
        )
    ref = reference_logits.to(device=logits.device, dtype=logits.dtype)
    out = logits.clone() if alpha == 0 else (1.0 + alpha) * logits - alpha * ref
    out = out.masked_fill(logits == -math.inf, -math.inf)
    if beta > 0:
        cutoff = logits.max(dim=-1, keepdim=True).values + math.log(beta)
        out = out.masked_fill(logits < cutoff, -math.inf)
    return out


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Left padding: a row's first real token is position 0. Without explicit positions the model would count the
    # pads, so the same prompt would get other positions padded than alone (as generate() does, utils.py).
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


class _ReferenceStream:
    """The reference inputs run through ``model`` with their own KV cache, one token per decoding step."""

    def __init__(self, model: Any, reference_inputs: Mapping[str, torch.Tensor]) -> None:
        if "input_ids" not in reference_inputs:
            raise ReferenceStreamError("reference_inputs need 'input_ids' (what a tokenizer/processor returns)")
        self.model = model
        self.inputs = dict(reference_inputs)
        self.batch_size = int(self.inputs["input_ids"].shape[0])
        params = inspect.signature(model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self.takes_positions = "position_ids" in params
        self.takes_logits_to_keep = "logits_to_keep" in params
        self.cache: Any = None
        self.attention_mask: torch.Tensor | None = None

    def _forward(self, kwargs: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            out = self.model(**kwargs, use_cache=True, return_dict=True)
        cache = getattr(out, "cache", None)
        self.cache = cache if cache is not None else getattr(out, "past_key_values", None)
        if self.cache is None:
            raise ReferenceStreamError(f"{type(self.model).__name__} returned no KV cache for the reference stream")
        return out.logits[:, -1]

    def prefill(self, device: torch.device) -> torch.Tensor:
        """Run the whole reference prompt; logits of its last position (batch, vocab)."""
        kwargs: dict[str, Any] = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.inputs.items()}
        ids = kwargs["input_ids"]
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask.long()
        kwargs["attention_mask"] = mask
        if self.takes_positions and "position_ids" not in kwargs:
            kwargs["position_ids"] = _position_ids(mask)
        if self.takes_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        self.cache, self.attention_mask = None, mask
        return self._forward(kwargs)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` (batch, 1), the main stream's last choices; logits of that position (batch, vocab)."""
        assert self.attention_mask is not None, "prefill() first"
        mask = torch.cat([self.attention_mask, self.attention_mask.new_ones((tokens.shape[0], 1))], dim=1)
        self.attention_mask = mask
        kwargs: dict[str, Any] = {"input_ids": tokens, "attention_mask": mask, self.cache_kwarg: self.cache}
        if self.takes_positions:
            kwargs["position_ids"] = _position_ids(mask)[:, -1:]
        return self._forward(kwargs)


class DebiasSamplingProcessor(LogitsProcessor):
    """Visual debias decoding / VCD as a logits processor: (1+α)·l(x, v) − α·l_ref on the plausible tokens.

    Parameters
    ----------
    alpha: contrast strength α ≥ 0 (papers: 1). α = 0 leaves the plausible tokens' logits unchanged.
    beta: plausibility threshold β in [0, 1] (papers: 0.1): tokens with p(y | x, v) < β · max p are masked.
    reference: which reference input ``l_ref`` comes from, one of "none", "blank", "noise", "unk"; recorded for
        reports, the reference inputs themselves are passed to ``bind``.

    Use
    ---
    ``bind(model, reference_inputs)`` (or ``bind_callable(fn)``), then pass the processor to ``generate``::

        proc = DebiasSamplingProcessor().bind(model, processor(text=prompts_without_image, padding=True,
                                                                   return_tensors="pt"))
        out = model.generate(**real_inputs, logits_processor=LogitsProcessorList([proc]), do_sample=False)

    The reference batch must match the main batch row for row; ``num_return_sequences > 1`` and beam search grow
    the main batch, so they are refused (expand the reference inputs with ``repeat_interleave`` for
    ``num_return_sequences`` with sampling if needed). A processor can serve several ``generate`` calls: a call
    whose ``input_ids`` do not extend the previous step's by one token starts the reference stream afresh.
    Positions in the reference stream are 1-D (cumsum of the attention mask); models with multi-axis rotary
    positions (Qwen2-VL's M-RoPE) need ``bind_callable`` instead.
    """

    model_: Any
    reference_inputs_: Mapping[str, torch.Tensor]
    reference_fn_: ReferenceFn

    def __init__(self, alpha: float = 1.0, beta: float = 0.1, reference: str = "none") -> None:
        if not (math.isfinite(alpha) and alpha >= 0):
            raise InvalidRequestError(f"alpha must be a finite number >= 0, got {alpha}")
        if not 0.0 <= beta <= 1.0:
            raise InvalidRequestError(f"beta must be in [0, 1], got {beta}")
        if reference not in REFERENCES:
            raise InvalidRequestError(f"unknown reference {reference!r}; choose from {list(REFERENCES)}")
        self.alpha = alpha
        self.beta = beta
        self.reference = reference
        self._stream: _ReferenceStream | None = None
        self._last_input_ids: torch.Tensor | None = None

    @classmethod
    def vcd(cls, alpha: float = 1.0, beta: float = 0.1) -> DebiasSamplingProcessor:
        """VCD's preset (Leng et al. 2024): a diffusion-noised image as reference (``biasaudit.backend.vlm_noise``,
        step 500 of 1000), α = 1, β = 0.1."""
        return cls(alpha=alpha, beta=beta, reference="noise")

    def __repr__(self) -> str:
        bound = "model" if self._stream is not None else ("callable" if hasattr(self, "reference_fn_") else "unbound")
        params = f"alpha={self.alpha!r}, beta={self.beta!r}, reference={self.reference!r}"
        return f"{type(self).__name__}({params}) [{bound}]"

    # -- binding the reference ------------------------------------------------------------------
    def bind(self, model: Any, reference_inputs: Mapping[str, torch.Tensor]) -> DebiasSamplingProcessor:
        """Take the reference logits from ``model`` run on ``reference_inputs``; returns ``self`` (rebinding
        replaces any earlier reference and resets the stream).

        ``reference_inputs``: what a tokenizer/processor returns for the reference prompts (``input_ids``,
        ``attention_mask``, optionally ``pixel_values`` etc.), LEFT-padded, row i the reference of main row i.
        Extra keys such as ``pixel_values`` are used at the prefill only; later steps live on the KV cache.
        """
        mask = reference_inputs.get("attention_mask")
        if mask is not None and bool((mask[:, -1] == 0).any()):
            raise ReferenceStreamError(
                "reference_inputs look right-padded (a row ends in padding); tokenize them with padding_side='left'"
            )
        self.__dict__.pop("reference_fn_", None)
        self.model_ = model
        self.reference_inputs_ = reference_inputs
        self._stream = _ReferenceStream(model, reference_inputs)
        self._last_input_ids = None
        return self

    def bind_callable(self, fn: ReferenceFn) -> DebiasSamplingProcessor:
        """Take the reference logits from ``fn(input_ids) -> (batch, vocab)``, called with the main stream's
        ``input_ids`` at every step; returns ``self``. For exact tests and custom reference models."""
        self.__dict__.pop("model_", None)
        self.__dict__.pop("reference_inputs_", None)
        self._stream = None
        self._last_input_ids = None
        self.reference_fn_ = fn
        return self

    def reset(self) -> None:
        """Forget the reference stream's cache; the next call prefills again."""
        self._last_input_ids = None
        if self._stream is not None:
            self._stream.cache, self._stream.attention_mask = None, None

    def __deepcopy__(self, memo: dict[int, Any]) -> DebiasSamplingProcessor:
        # Copies share the bound model (never duplicate weights) but not the stream's cache.
        clone = DebiasSamplingProcessor(self.alpha, self.beta, self.reference)
        if self._stream is not None:
            clone.bind(self.model_, self.reference_inputs_)
        elif hasattr(self, "reference_fn_"):
            clone.bind_callable(self.reference_fn_)
        return clone

    # -- decoding -------------------------------------------------------------------------------
    def reference_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The reference logits (batch, vocab) for the main stream's current ``input_ids`` (batch, length)."""
        if hasattr(self, "reference_fn_"):
            return self.reference_fn_(input_ids)
        if self._stream is None:
            raise ReferenceStreamError(
                "DebiasSamplingProcessor is not bound to a reference; call .bind(model, reference_inputs) "
                "or .bind_callable(fn) before generate()"
            )
        if input_ids.shape[0] != self._stream.batch_size:
            raise ReferenceStreamError(
                f"the main batch has {input_ids.shape[0]} rows but the reference inputs {self._stream.batch_size}; "
                "they must match row for row (num_return_sequences > 1 and beam search multiply the main batch)"
            )
        last = self._last_input_ids
        continues = (
            last is not None
            and self._stream.cache is not None
            and input_ids.shape[1] == last.shape[1] + 1
            and torch.equal(input_ids[:, :-1], last)
        )
        # The prompt length alone (as in calibration/logits_processor.py) cannot tell a new generate() from a
        # next step when prompts differ in length; "extends the previous ids by one token" can.
        self._last_input_ids = input_ids.clone()
        if continues:
            return self._stream.step(input_ids[:, -1:])
        return self._stream.prefill(input_ids.device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:  # type: ignore[override]
        reference = self.reference_logits(input_ids)
        if reference.shape != scores.shape:
            raise ReferenceStreamError(
                f"reference logits have shape {tuple(reference.shape)}, the main logits {tuple(scores.shape)}; "
                "bind the same model (same vocabulary) with one reference row per main row"
            )
        return debias_logits(scores, reference, self.alpha, self.beta)
