"""Generation for ``HFBackend`` (mixed in): shared prompts, shared headers, finished rows leaving batches.

* **One prefill per prompt for k samples.** ``generate(..., num_return_sequences=k)`` encodes each
  prompt (all but its last token) once and repeats its KV cache k times; transformers' own option
  repeats the prompt before the forward pass, so it would pay for the prompt k times.
* **A shared few-shot header** is encoded once per call (the scoring path's prefix cache). The
  prompts' own tokens are prefilled on top of it with shared-prefix attention (``prefix_attention.py``),
  so the prefill reads the header once for the batch; decoding then gets an ordinary cache.
* **Finished rows leave generation batches** every few tokens (with their rows of the KV cache), so
  a batch of short answers does not run as long as its longest one.

The mixin uses the host's model, tokenizer, planners and prefix machinery (``hf.HFBackend``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from biasaudit.backend.kv_cache import broadcast_cache, cache_tensors, output_cache
from biasaudit.backend.prefix_attention import SharedPrefix, prefix_attention
from biasaudit.backend.rows import ScoredRow
from biasaudit.errors import InvalidRequestError
from biasaudit.progress import PROGRESS_MIN_ITEMS, progress_bar

# Generation's budget (rows x (prompt + new tokens)). A decoding step runs one token per row, and on a
# CPU reading the weights dominates until the batch is large: SmolLM2-135M, 2 cores, ~86-token rows,
# one step took 0.42 s for 45 rows, 0.69 s for 160 and 1.24 s for 320 (9.4, 4.3, 3.9 ms per row), so
# rows up to ~16k tokens' worth are nearly free; the KV cache of such a batch is ~0.6 GB here.
AUTO_GENERATE_BUDGET = {"cpu": 16384, "accelerator": 65536}
# Generation drops finished rows from a batch after this many new tokens, then after segments growing
# with the answer (see ``HFBackend._decode``). 2 beat 1 and 4 on the knowledge probe's short answers.
_COMPACT_EVERY = 2


class GenerationMixin:
    """``generate`` and its helpers; see the module docstring."""

    model: Any
    tokenizer: Any
    device: torch.device
    progress: bool
    prefix_reuse: bool
    prefix_attention_unavailable: str | None
    generation_planner: Any
    _cache_kwarg: str
    _body: Any
    _prefix_token_id: int
    _stop_criteria_cache: dict[tuple[str, ...], Any]
    # Provided by the host class (``HFBackend``).
    format_chat: Callable[[str], str]
    _encode_many: Callable[[Sequence[str]], list[list[int]]]
    _pad_id: Callable[[], int]
    _group_by_prefix: Callable[[list[Any]], list[tuple[int, list[int]]]]
    _encoded_prefix: Callable[[tuple[int, ...]], tuple[int, Any, list[tuple[torch.Tensor, torch.Tensor]]]]
    _left_padded: Callable[[Sequence[Sequence[int]]], tuple[torch.Tensor, torch.Tensor]]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        logits_processors: Sequence[Any] | None = None,
        apply_chat_template: bool = False,
        stop: Sequence[str] | None = None,
        num_return_sequences: int = 1,
    ) -> list[str]:
        from transformers import LogitsProcessorList

        check_generation_request(len(prompts), max_new_tokens, do_sample, temperature)
        if (
            isinstance(num_return_sequences, bool)
            or not isinstance(num_return_sequences, int | np.integer)
            or num_return_sequences < 1
        ):
            raise InvalidRequestError(
                f"num_return_sequences must be a positive integer (continuations per prompt), "
                f"not {num_return_sequences!r}"
            )
        texts = [self.format_chat(p) if apply_chat_template else p for p in prompts]
        encoded = [ids or [self._prefix_token_id] for ids in self._encode_many(texts)]
        copies = int(num_return_sequences)
        if not self.prefix_reuse and copies > 1:
            # No KV sharing: every copy is a row of its own (what transformers' num_return_sequences does).
            encoded = [ids for ids in encoded for _ in range(copies)]
            copies = 1
        outputs: list[str] = [""] * (len(encoded) * copies)
        if seed is not None:
            torch.manual_seed(seed)
        sampling = sampling_options(do_sample, temperature, top_p)
        stops = [s for s in (stop or []) if s]
        options: dict[str, Any] = {
            "do_sample": do_sample,
            "top_k": None,
            "pad_token_id": self._pad_id(),
            "logits_processor": LogitsProcessorList(list(logits_processors or [])),
            **sampling,
        }
        # Sorted prompts put the ones sharing a header next to each other (see ``_group_by_prefix``);
        # without reuse the order stays as given, so batches (and a seed's samples) are what they were.
        order = list(range(len(encoded)))
        if self.prefix_reuse:
            order.sort(key=lambda i: encoded[i])
        rows = [ScoredRow(tuple(encoded[i]), {}) for i in order]
        with (
            torch.inference_mode(),
            progress_bar(
                "generating", len(encoded), enabled=self.progress and len(prompts) >= PROGRESS_MIN_ITEMS // 4
            ) as advance,
        ):
            for prefix_len, members in self._group_by_prefix(rows):
                index = [order[m] for m in members]
                texts_out = self._generate_group(
                    [encoded[i] for i in index], prefix_len, copies, max_new_tokens, stops, options, advance
                )
                for j, i in enumerate(index):
                    outputs[i * copies : (i + 1) * copies] = [cut_at_stops(t, stops) for t in texts_out[j]]
        return outputs

    def _generate_group(
        self,
        seqs: list[list[int]],
        prefix_len: int,
        copies: int,
        max_new_tokens: int,
        stops: list[str],
        options: dict[str, Any],
        advance: Callable[[int], None],
    ) -> list[list[str]]:
        """``copies`` continuations of each of ``seqs``, whose first ``prefix_len`` tokens are shared.

        Rows are left padded after the shared prefix ([prefix | padding | own tokens]); the attention
        mask hides the padding and transformers derives positions from the mask, so a row computes
        what it would alone.
        """
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if prefix_len:
            prefix_len, _, prefix_kv = self._encoded_prefix(tuple(seqs[0][:prefix_len]))
        prefix_ids = torch.tensor([seqs[0][:prefix_len]], dtype=torch.long, device=self.device)
        outputs: list[list[str]] = [[] for _ in seqs]

        def run(batch: np.ndarray) -> None:
            own_ids, own_mask = self._left_padded([seqs[b][prefix_len:] for b in batch])
            cache = self._prompt_cache(own_ids, own_mask, prefix_kv, copies)
            n = len(batch)
            ids = torch.cat([prefix_ids.expand(n, -1), own_ids], dim=1)
            mask = torch.cat([torch.ones_like(ids[:, :prefix_len]), own_mask], dim=1)
            if copies > 1:
                ids, mask = ids.repeat_interleave(copies, dim=0), mask.repeat_interleave(copies, dim=0)
            new = self._decode(ids, mask, cache, max_new_tokens, stops, options)
            for j, b in enumerate(batch):
                rows = new[j * copies : (j + 1) * copies]
                outputs[b] = [self.tokenizer.decode(row, skip_special_tokens=True) for row in rows]

        # Generation memory grows with the new tokens too, so they count towards the batch budget, and
        # each prompt brings ``copies`` rows.
        lengths = [(len(s) + max_new_tokens) * copies for s in seqs]
        self.generation_planner.run(lengths, run, advance)
        return outputs

    def _decode(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        cache: Any,
        max_new_tokens: int,
        stops: list[str],
        options: dict[str, Any],
    ) -> list[list[int]]:
        """New token ids of each row of a batch (ids, mask: (rows, width), left padded), via ``model.generate``.

        Generation runs in segments; after each, the rows that have finished (a stop string or EOS,
        as transformers decides) leave the batch with their rows of the KV cache, and the rest
        continue where they were. Without that a batch of short answers runs until its longest is
        done, and on a CPU a decoding step costs nearly as much for a few rows as for all of them.
        Segments are ``_COMPACT_EVERY`` tokens, or half the tokens generated so far when that is
        more, so a long generation restarts only O(log n) times. With logits processors the batch
        stays whole, in one call: a processor may keep state per row or per call. Processors with a
        ``reset()`` (``LabelPriorLogitsProcessor``) are reset first: each batch of each prefix group is a
        generation of its own, whose first step they act on, whatever the width of earlier batches.
        """
        from transformers import StoppingCriteriaList

        rows_done = _RowsDone(self._stop_criteria(tuple(stops)), self.model.generation_config.eos_token_id)
        whole = bool(options["logits_processor"])
        for processor in options["logits_processor"]:
            reset = getattr(processor, "reset", None)
            if callable(reset):
                reset()
        rows = list(range(ids.shape[0]))
        new_tokens: list[list[int]] = [[] for _ in rows]
        remaining = max_new_tokens
        while True:
            generated = max_new_tokens - remaining
            segment = remaining if whole else min(remaining, max(_COMPACT_EVERY, generated // 2))
            rows_done.reset()
            extra = {self._cache_kwarg: cache} if cache is not None else {}
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=segment,
                stopping_criteria=StoppingCriteriaList([rows_done]),
                return_dict_in_generate=True,
                **extra,
                **options,
            )
            new = out.sequences[:, ids.shape[1] :]
            for j, row in enumerate(new.tolist()):
                new_tokens[rows[j]].extend(row)
            remaining -= new.shape[1]
            running = [j for j in range(len(rows)) if not rows_done.finished[j]]
            if remaining <= 0 or not running:
                return new_tokens
            cache, ids = output_cache(out), out.sequences
            mask = torch.cat([mask, torch.ones_like(new)], dim=1)
            if len(running) < len(rows):
                keep = torch.tensor(running, device=ids.device)
                cache.batch_select_indices(keep)
                ids, mask, rows = ids[keep], mask[keep], [rows[j] for j in running]

    def _stop_criteria(self, stops: tuple[str, ...]) -> Any:
        """transformers' ``StopStringCriteria`` for ``stops`` (None without), built once per backend:
        building one reads the whole vocabulary (a fifth of a second here)."""
        if not stops:
            return None
        if stops not in self._stop_criteria_cache:
            from transformers import StopStringCriteria

            self._stop_criteria_cache[stops] = StopStringCriteria(self.tokenizer, list(stops))
        return self._stop_criteria_cache[stops]

    def _prompt_cache(
        self,
        own_ids: torch.Tensor,
        own_mask: torch.Tensor,
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]],
        copies: int,
    ) -> Any:
        """The KV cache ``generate`` starts from: the shared prefix and the prompts' own tokens but the last,
        repeated ``copies`` times per prompt (None: nothing to share).

        The last token is left to ``generate``, whose first step computes it (once per copy) and
        gives the first continuation token's logits; everything before it is shared. With shared-prefix
        attention the own tokens read the prefix once for the batch and the decoding cache is
        [prefix | own] per row; without it they are run only when there are copies to share them.
        own_ids, own_mask: (n, width), left padded.
        """
        n, width = own_ids.shape
        prefix_len = prefix_kv[0][0].shape[2] if prefix_kv else 0
        shared = bool(prefix_kv) and self.prefix_attention_unavailable is None
        if width == 1 or (copies == 1 and not shared):
            return broadcast_cache(prefix_kv, n * copies, self.model.config) if prefix_kv else None
        body_mask = own_mask[:, :-1]
        positions = prefix_len + (body_mask.cumsum(dim=1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {"position_ids": positions, "use_cache": True}
        if shared:
            kwargs["shared_prefix"] = SharedPrefix(prefix_kv)
        elif prefix_kv:
            kwargs[self._cache_kwarg] = broadcast_cache(prefix_kv, n, self.model.config)
            body_mask = torch.cat([torch.ones_like(own_mask[:, :1]).expand(-1, prefix_len), body_mask], dim=1)
        with prefix_attention(self.model) if shared else contextlib.nullcontext():
            out = self._body(input_ids=own_ids[:, :-1], attention_mask=body_mask, **kwargs)
        kv = cache_tensors(output_cache(out))
        if shared:  # the forward's cache holds the own tokens only; decoding reads [prefix | own]
            kv = [
                (torch.cat([pk.expand(n, -1, -1, -1), k], dim=2), torch.cat([pv.expand(n, -1, -1, -1), v], dim=2))
                for (pk, pv), (k, v) in zip(prefix_kv, kv, strict=True)
            ]
        return broadcast_cache(kv, copies, self.model.config)


def check_generation_request(n: int, max_new_tokens: int, do_sample: bool, temperature: float) -> None:
    """Refuse an empty request, no new tokens, or sampling at a non-positive temperature (every backend)."""
    if n == 0:
        raise InvalidRequestError("generate got no prompts")
    if max_new_tokens < 1:
        raise InvalidRequestError("max_new_tokens must be at least 1")
    if do_sample and temperature <= 0:
        raise InvalidRequestError("temperature must be positive when sampling")


def sampling_options(do_sample: bool, temperature: float, top_p: float) -> dict[str, Any]:
    """``model.generate`` kwargs: greedy sets temperature/top_p to None so a generation config cannot
    turn them back on (and transformers does not warn that they are ignored)."""
    return {"temperature": temperature, "top_p": top_p} if do_sample else {"temperature": None, "top_p": None}


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first of ``stops`` (all of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


class _RowsDone:
    """A transformers stopping criterion (stop strings, EOS) that remembers which rows have finished.

    transformers stops a row when any criterion fires and pads it from then on, but does not say which
    rows those are; ``finished`` (rows,) does, since the last ``reset``.
    """

    def __init__(self, stop_strings: Any, eos_token_id: int | Sequence[int] | None) -> None:
        self.stop_strings = stop_strings
        eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.eos = torch.tensor(eos, dtype=torch.long)
        self.finished = torch.zeros(0, dtype=torch.bool)

    def reset(self) -> None:
        self.finished = torch.zeros(0, dtype=torch.bool)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = torch.isin(input_ids[:, -1], self.eos.to(input_ids.device))
        if self.stop_strings is not None:
            done = done | self.stop_strings(input_ids, scores)
        self.finished = done.cpu() if len(self.finished) == 0 else self.finished | done.cpu()
        return done
