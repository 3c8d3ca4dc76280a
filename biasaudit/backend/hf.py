"""``HFBackend``: the ``Backend`` protocol on a transformers causal LM.

Speed without changing a number (each trick has an equivalence test):

* **Forward sharing.** A request needs the logits at its continuation positions only. Requests whose
  input tokens are a prefix of another request's input read their logits from that longer forward, so
  K single-token labels after one prompt cost one forward pass, not K.
* **Shared-prefix KV reuse.** Requests that share a long token prefix (few-shot demonstrations) encode
  it once; its KV cache is broadcast over a batch of suffixes, which are then the only tokens computed.
  Encoded prefixes are kept in a small LRU cache, so later calls with the same prompt skip it too.
  The suffixes read the prefix through shared-prefix attention (``prefix_attention.py``): one batched
  matmul against the single prefix for all rows and query heads, merged with each row's own causal
  attention by log-sum-exp, so the prefix is never copied per row or per head; models it cannot
  serve get the prefix as a KV cache broadcast over the rows.
  Generation uses it as well: a call's few-shot header is encoded once, the questions run on top.
* **One prefill per prompt for k samples.** ``generate(..., num_return_sequences=k)`` encodes each
  prompt (all but its last token) once and repeats its KV cache k times; transformers' own option
  repeats the prompt before the forward pass, so it would pay for the prompt k times.
* **Finished rows leave generation batches** every few tokens (with their rows of the KV cache), so
  a batch of short answers does not run as long as its longest one; on a CPU, generation batches
  are also larger than scoring ones, since a decoding step costs little more for many rows than for
  a few. Both change which rows share a batch: greedy text stays the same (up to float ties), a
  seed's samples are other draws from the same distribution.
* **Logits only where needed.** The body runs once; the vocabulary projection (a fifth of this
  model's FLOPs and by far its largest activation) runs only on the positions that are scored.
* **Length-sorted batching** under a token budget, automatic batch size with halve-and-retry on OOM,
  right padding for scoring (attention mask + positions make padded rows equal unpadded ones) and left
  padding for generation; everything under ``torch.inference_mode``.

Generation lives in ``hf_generation.py`` and hidden-state extraction in ``hf_states.py`` (mixins of
``HFBackend``); ``kv_cache.py`` holds the cache plumbing both scoring and generation reuse.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from biasaudit.backend.batching import AUTO_BUDGET, BatchPlanner, BatchSize
from biasaudit.backend.fingerprint import weights_fingerprint
from biasaudit.backend.hf_generation import AUTO_GENERATE_BUDGET, GenerationMixin
from biasaudit.backend.hf_states import HiddenStatesMixin
from biasaudit.backend.kv_cache import broadcast_cache, cache_tensors, output_cache
from biasaudit.backend.prefix_attention import SharedPrefix, prefix_attention, unsupported_reason
from biasaudit.backend.protocol import LabelMode, LoglikelihoodResult
from biasaudit.backend.rows import ScoredRow
from biasaudit.errors import InvalidRequestError, LabelCollisionError, LabelTruncationWarning
from biasaudit.progress import PROGRESS_MIN_ITEMS, progress_bar

if TYPE_CHECKING:
    from biasaudit.models import LoadOptions

# Below this many tokens a shared prefix is not worth a separate forward pass.
DEFAULT_MIN_PREFIX_TOKENS = 16
# ... and below this many tokens saved, a shared prefix is not worth a separate forward pass either.
DEFAULT_MIN_REUSE_SAVING = 1024


@dataclass(frozen=True)
class _ScoreItem:
    """A scoring request in token space: ``tokens`` = context + continuation, the last ``n_cont`` scored."""

    tokens: tuple[int, ...]
    n_cont: int

    @property
    def input(self) -> tuple[int, ...]:
        return self.tokens[:-1]


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class HFBackend(GenerationMixin, HiddenStatesMixin):
    """Batched inference on a transformers causal LM (see the module docstring for what is fast).

    Parameters
    ----------
    model, tokenizer:
        A loaded ``*ForCausalLM`` and its tokenizer (``biasaudit.models.load_model`` gives both).
    batch_size:
        ``"auto"`` (token budget found by halving on OOM) or a maximum number of rows per batch.
    max_batch_tokens:
        Padded tokens per batch (prompt + new tokens per row in generation); defaults depend on the
        device, and on a CPU generation gets a larger one (see ``AUTO_GENERATE_BUDGET``).
    prefix_reuse:
        Encode shared prompt prefixes once and reuse their KV cache.
    min_prefix_tokens:
        Shortest shared prefix worth reusing.
    min_reuse_saving:
        Fewest tokens a shared prefix must save ((rows sharing it - 1) x its length) before it gets its
        own forward pass. Each reused prefix costs a separate small forward and a cache broadcast; on a
        CPU that overhead outweighs sharing a 150-token context among three answers (BBQ ran 3.5x
        slower with reuse), while a few-shot prefix shared by hundreds of queries saves far more. A
        prefix whose encoding an earlier call left in the cache needs no forward, so it is reused for
        any number of rows.
    prefix_cache_size:
        Encoded prefixes kept across calls (least recently used dropped first); 0 disables.
    shared_prefix_attention:
        Let the rows after a reused prefix read it through shared-prefix attention (see
        ``prefix_attention.py``) rather than a KV cache copied into every row. Off, or for a model it
        cannot serve (``prefix_attention_unavailable`` says why), the broadcast cache is used.
    progress:
        Show rich progress bars on long calls.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: BatchSize = "auto",
        max_batch_tokens: int | None = None,
        prefix_reuse: bool = True,
        min_prefix_tokens: int = DEFAULT_MIN_PREFIX_TOKENS,
        min_reuse_saving: int = DEFAULT_MIN_REUSE_SAVING,
        prefix_cache_size: int = 8,
        shared_prefix_attention: bool = True,
        progress: bool = True,
        name: str | None = None,
        max_length: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.name = name or getattr(model.config, "name_or_path", None) or type(model).__name__
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.n_layers: int = int(cfg.num_hidden_layers)
        self.hidden_size: int = int(cfg.hidden_size)
        kind = "cpu" if self.device.type == "cpu" else "accelerator"
        scoring_tokens = AUTO_BUDGET[kind] if max_batch_tokens is None else max_batch_tokens
        generation_tokens = AUTO_GENERATE_BUDGET[kind] if max_batch_tokens is None else max_batch_tokens
        self.planner = BatchPlanner(batch_size, scoring_tokens)
        # Generation batches are planned apart: a decoding step's cost grows slower with rows (see
        # ``AUTO_GENERATE_BUDGET``), and halving one budget on OOM says little about the other.
        self.generation_planner = BatchPlanner(batch_size, generation_tokens)
        self.min_prefix_tokens = min_prefix_tokens
        self.min_reuse_saving = min_reuse_saving
        self.prefix_cache_size = prefix_cache_size
        self._prefix_cache: OrderedDict[tuple[int, ...], tuple[torch.Tensor, list]] = OrderedDict()
        self._stop_criteria_cache: dict[tuple[str, ...], Any] = {}
        self.progress = progress
        self.max_length = max_length
        # Sliding-window caches crop old keys, so a broadcast prefix would not be the same computation.
        self.prefix_reuse = prefix_reuse and not getattr(cfg, "sliding_window", None)
        self._body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        self._head = model.get_output_embeddings()
        self._cache_kwarg = self._find_cache_kwarg()
        self._split_head = self._head is not None and self._check_split_head()
        self._decoder_layers = self._find_decoder_layers()
        self._prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self._adds_bos = self._tokenizer_adds_bos()
        # Why reused prefixes go through the broadcast cache instead (None: shared-prefix attention serves them).
        self.prefix_attention_unavailable: str | None = (
            "switched off" if not shared_prefix_attention else self._check_prefix_attention()
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the weights (see ``weights_fingerprint``)."""
        return weights_fingerprint(self.model)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_spec(
        cls,
        spec: str = "default",
        *,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        options: LoadOptions | None = None,
        **kwargs: Any,
    ) -> HFBackend:
        """Load ``spec`` with ``biasaudit.models.load_model`` and wrap it (commands use ``spec.load_backend``)."""
        from biasaudit.models import load_model

        loaded = load_model(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code, options=options)
        return cls(loaded.model, loaded.tokenizer, name=loaded.name, **kwargs)

    def _find_cache_kwarg(self) -> str:
        import inspect

        params = inspect.signature(self._body.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    def _check_split_head(self) -> bool:
        """Whether head(body(x)) reproduces the model's logits (false for e.g. soft-capped logits)."""
        ids = torch.tensor([[self.tokenizer.eos_token_id or 0] * 3], device=self.device)
        with torch.inference_mode():
            full = self.model(input_ids=ids).logits.float()
            split = self._head(self._body(input_ids=ids).last_hidden_state).float()
        return bool(torch.allclose(full, split, atol=1e-4, rtol=1e-4))

    def _check_prefix_attention(self) -> str | None:
        """Why shared-prefix attention cannot serve this model (None when it reproduces the broadcast cache).

        Beyond what the config says (``unsupported_reason``), a model whose attention module does not pass
        the forward's keywords on, or adds position biases of its own, would score wrongly; a 6-token
        prefix and two rows (one right padded) run both ways tell (to float32 precision, or half-precision's).
        """
        reason = unsupported_reason(self.model)
        if reason is not None or not self.prefix_reuse:
            return reason
        token = self.tokenizer.eos_token_id or 0
        with torch.inference_mode():
            try:
                broadcast, shared, real = self._prefix_attention_both_ways(token)
            except (TypeError, ValueError, RuntimeError) as err:  # e.g. a forward that refuses the keyword
                return f"{type(self.model).__name__} cannot run it ({type(err).__name__}: {err})"
        tol = 1e-4 if broadcast.dtype == torch.float32 else 5e-2
        if not torch.allclose(broadcast[real].float(), shared[real].float(), atol=tol, rtol=tol):
            return f"{type(self.model).__name__}'s attention does not reproduce the broadcast cache with it"
        return None

    def _prefix_attention_both_ways(self, token: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(broadcast-cache states, shared-prefix-attention states, real-token mask) of a tiny check batch."""
        prefix = self._body(input_ids=torch.full((1, 6), token, device=self.device), use_cache=True)
        prefix_kv = cache_tensors(output_cache(prefix))
        ids = torch.tensor([[token, 1, 2], [token, 3, token]], device=self.device)
        mask = torch.tensor([[1, 1, 1], [1, 1, 0]], device=self.device)
        positions = torch.arange(6, 9, device=self.device).unsqueeze(0)
        broadcast = self._body(
            input_ids=ids,
            attention_mask=torch.cat([torch.ones((2, 6), dtype=mask.dtype, device=self.device), mask], dim=1),
            position_ids=positions,
            use_cache=True,
            **{self._cache_kwarg: broadcast_cache(prefix_kv, 2, self.model.config)},
        ).last_hidden_state
        with prefix_attention(self.model):
            shared = self._body(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=False,
                shared_prefix=SharedPrefix(prefix_kv),
            ).last_hidden_state
        return broadcast, shared, mask.bool()

    def _find_decoder_layers(self) -> torch.nn.ModuleList:
        for module in self._body.modules():
            if isinstance(module, torch.nn.ModuleList) and len(module) == self.n_layers:
                return module
        raise InvalidRequestError(f"cannot find the {self.n_layers} decoder layers of {type(self.model).__name__}")

    def _tokenizer_adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return False
        ids = self.tokenizer("a", add_special_tokens=True).input_ids
        return bool(ids) and ids[0] == bos

    # ------------------------------------------------------------------ tokenisation
    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with the BOS token the tokenizer adds (once).

        A text that already starts with the BOS string -- the output of a chat template that writes it
        (Llama 3's ``<|begin_of_text|>``, Gemma's and Mistral's ``<s>``/``<bos>``) -- encodes to the BOS
        token already; adding another would give the model a double BOS it never saw in training.
        """
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False).input_ids
        if self._adds_bos:
            bos = self.tokenizer.bos_token_id
            encoded = [list(ids) if ids and ids[0] == bos else [bos, *ids] for ids in encoded]
        if self.max_length is not None:
            self._check_length(texts, encoded)
        return [list(ids) for ids in encoded]

    def _check_length(self, texts: Sequence[str], encoded: Sequence[Sequence[int]]) -> None:
        """Refuse inputs longer than ``max_length`` rather than cut them: a truncated prompt is another question."""
        assert self.max_length is not None
        longest = max(range(len(encoded)), key=lambda i: len(encoded[i]))
        if len(encoded[longest]) > self.max_length:
            text = texts[longest]
            raise InvalidRequestError(
                f"an input of {len(encoded[longest])} tokens exceeds max_length={self.max_length} "
                f"({text[:60]!r}{'...' if len(text) > 60 else ''}); raise max_length in --model_args or shorten it"
            )

    def format_chat(self, prompt: str) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidRequestError(f"{self.name} has no chat template; call without apply_chat_template=True")
        return str(
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        )

    def _encode_pairs(
        self, requests: Sequence[tuple[str, str]], apply_chat_template: bool
    ) -> list[tuple[list[int], list[int]]]:
        """(context tokens, continuation tokens) per request, split the way lm-evaluation-harness does.

        Trailing whitespace of the context moves to the continuation (not after a chat template,
        whose final newline belongs to the template), then context + continuation is
        encoded whole and the continuation is what follows the context's own encoding. That keeps
        the tokens the model would see for the joined text. An empty context becomes the BOS (or EOS)
        token, so the first continuation token is scored too.
        """
        contexts, continuations = [], []
        for i, request in enumerate(requests):
            if not isinstance(request, tuple | list) or len(request) != 2:
                raise InvalidRequestError(f"request {i} must be a (context, continuation) pair, got {request!r}")
            context, continuation = request
            if not isinstance(context, str) or not isinstance(continuation, str):
                raise InvalidRequestError(f"request {i}: context and continuation must be strings")
            if not continuation:
                raise InvalidRequestError(f"request {i}: the continuation is empty; there is nothing to score")
            if apply_chat_template:
                # The template's own trailing newline is structure, not the start of the answer.
                context = self.format_chat(context)
            else:
                n_spaces = len(context) - len(context.rstrip())
                if n_spaces:
                    continuation = context[-n_spaces:] + continuation
                    context = context[:-n_spaces]
            contexts.append(context)
            continuations.append(continuation)
        whole = self._encode_many([c + x for c, x in zip(contexts, continuations, strict=True)])
        ctx = self._encode_many(contexts)
        pairs = []
        for i, (context, w, c) in enumerate(zip(contexts, whole, ctx, strict=True)):
            if not context:  # the prefix token stands in for the context; the continuation gets no BOS of its own
                cont = list(self.tokenizer(continuations[i], add_special_tokens=False).input_ids)
                pairs.append(([self._prefix_token_id], cont))
                continue
            cont = w[len(c) :]
            if not cont:
                raise InvalidRequestError(f"request {i}: the continuation encodes to no tokens")
            pairs.append((c, cont))
        return pairs

    # ------------------------------------------------------------------ scoring core
    def _score(self, items: Sequence[_ScoreItem]) -> list[tuple[np.ndarray, bool]]:
        """Per item: log-probs of its continuation tokens (n_cont,) and whether all are the argmax."""
        rows, item_reads = self._plan_rows(items)
        n_reads = sum(len(r.reads) for r in rows)
        read_lp = np.zeros(n_reads, dtype=np.float64)
        read_greedy = np.zeros(n_reads, dtype=bool)
        enabled = self.progress and len(rows) >= PROGRESS_MIN_ITEMS
        with torch.inference_mode(), progress_bar("scoring", len(rows), enabled=enabled) as advance:
            for prefix_len, members in self._group_by_prefix(rows):
                self._run_group([rows[m] for m in members], prefix_len, read_lp, read_greedy, advance)
        return [(read_lp[reads], bool(read_greedy[reads].all())) for reads in item_reads]

    def _plan_rows(self, items: Sequence[_ScoreItem]) -> tuple[list[ScoredRow], list[np.ndarray]]:
        """Deduplicate inputs and let every input that is a prefix of another read from the longer one.

        Sorting inputs lexicographically puts each input directly before the inputs it is a prefix of,
        so one backward pass finds, for each input, the longest sequence that contains it. Rows come
        back in lexicographic order, which puts rows with long shared prefixes next to each other.
        """
        by_input: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for idx, it in enumerate(items):
            if it.n_cont < 1 or it.n_cont >= len(it.tokens):
                raise InvalidRequestError("a scoring request needs a non-empty context and continuation")
            by_input[it.input].append(idx)
        ordered = sorted(by_input)
        root_of: dict[tuple[int, ...], tuple[int, ...]] = {}
        for i in range(len(ordered) - 1, -1, -1):
            seq = ordered[i]
            nxt = ordered[i + 1] if i + 1 < len(ordered) else None
            root_of[seq] = root_of[nxt] if nxt is not None and nxt[: len(seq)] == seq else seq
        rows: dict[tuple[int, ...], ScoredRow] = {}
        item_reads: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(items)
        n_reads = 0
        for seq in ordered:
            row = rows.setdefault(root_of[seq], ScoredRow(tokens=root_of[seq], reads={}))
            for idx in by_input[seq]:
                it = items[idx]
                first = len(it.tokens) - it.n_cont  # index of the first continuation token
                reads = []
                for j in range(it.n_cont):
                    key = (first - 1 + j, it.tokens[first + j])  # predicted at the previous position
                    if key not in row.reads:
                        row.reads[key] = n_reads
                        n_reads += 1
                    reads.append(row.reads[key])
                item_reads[idx] = np.asarray(reads, dtype=np.int64)
        return [rows[r] for r in sorted(rows)], item_reads

    def _group_by_prefix(self, rows: list[ScoredRow]) -> list[tuple[int, list[int]]]:
        """Split sorted rows into (shared prefix length, row indices) groups; 0 means no reuse.

        Neighbours in lexicographic order share the longest prefixes. A group grows while the prefix
        all its members share stays at least ``min_prefix_tokens`` long and keeps at least half of its
        length, so a long few-shot prefix is not diluted into a short instruction shared by everything.
        """
        if not self.prefix_reuse:
            return [(0, list(range(len(rows))))]
        groups: list[tuple[int, list[int]]] = []
        plain: list[int] = []
        i = 0
        while i < len(rows):
            members, shared = [i], len(rows[i].tokens)
            j = i + 1
            while j < len(rows):
                lcp = min(shared, _common_prefix_len(rows[i].tokens, rows[j].tokens))
                if lcp < self.min_prefix_tokens or (len(members) > 1 and lcp < shared // 2):
                    break
                members.append(j)
                shared = lcp
                j += 1
            # Every member keeps at least one token of its own to run on top of the prefix.
            prefix_len = min(shared, min(len(rows[m].tokens) for m in members) - 1)
            saving = (len(members) - 1) * prefix_len
            if not (len(members) > 1 and saving >= self.min_reuse_saving):
                # Not worth a forward of its own; but an encoding an earlier call kept costs none, so the
                # rows reuse as much of their prefix as it covers (a calibrator's 3 content-free inputs
                # after the test set was scored with the same demonstrations).
                prefix_len = self._cached_prefix(rows[i].tokens[:prefix_len])[1]
            if prefix_len >= self.min_prefix_tokens:
                groups.append((prefix_len, members))
            else:
                plain.extend(members)
            i = j
        if plain:
            groups.append((0, plain))
        return groups

    def _forward_states(self, ids: torch.Tensor, mask: torch.Tensor, **kwargs: Any) -> Any:
        """Hidden states before the vocabulary head (or logits when the head cannot be split off)."""
        if self._split_head:
            return self._body(input_ids=ids, attention_mask=mask, **kwargs)
        return self.model(input_ids=ids, attention_mask=mask, **kwargs)

    def _states(self, out: Any) -> torch.Tensor:
        return out.last_hidden_state if self._split_head else out.logits

    def _log_softmax(self, states: torch.Tensor) -> torch.Tensor:
        """(n, d) hidden states (or (n, vocab) logits) -> (n, vocab) float32 log-probs."""
        logits = self._head(states) if self._split_head else states
        return torch.log_softmax(logits.float(), dim=-1)

    def _run_group(
        self,
        rows: list[ScoredRow],
        prefix_len: int,
        read_lp: np.ndarray,
        read_greedy: np.ndarray,
        advance: Any,
    ) -> None:
        """Score ``rows``; with ``prefix_len`` > 0 their first ``prefix_len`` tokens are run once."""
        prefix_states = None
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if prefix_len:
            prefix_len, prefix_states, prefix_kv = self._encoded_prefix(rows[0].tokens[:prefix_len])
        shared = bool(prefix_len) and self.prefix_attention_unavailable is None

        def run(batch: np.ndarray) -> None:
            batch_rows = [rows[b] for b in batch]
            ids, mask = self._right_padded([r.tokens[prefix_len:] for r in batch_rows])
            kwargs: dict[str, Any] = {"use_cache": False}
            if prefix_len:
                kwargs["position_ids"] = torch.arange(
                    prefix_len, prefix_len + ids.shape[1], device=self.device
                ).unsqueeze(0)
            if shared:
                # No cache: the forward makes the rows' own keys and values; attention reads the prefix here.
                kwargs["shared_prefix"] = SharedPrefix(prefix_kv)
            elif prefix_len:
                mask = torch.cat([torch.ones_like(ids[:, :1]).expand(-1, prefix_len), mask], dim=1)
                kwargs[self._cache_kwarg] = broadcast_cache(prefix_kv, len(batch_rows), self.model.config)
                kwargs["use_cache"] = True
            with prefix_attention(self.model) if shared else contextlib.nullcontext():
                states = self._states(self._forward_states(ids, mask, **kwargs))
            # Gather every read position of the batch into one (n, d) block, then project once.
            blocks, read_pos, read_tok, read_idx = [], [], [], []
            offset = 0
            for k, r in enumerate(batch_rows):
                positions = sorted({p for p, _ in r.reads})
                local = {p: offset + n for n, p in enumerate(positions)}
                offset += len(positions)
                before = [p for p in positions if p < prefix_len]
                if before:
                    assert prefix_states is not None
                    blocks.append(prefix_states[before])
                after = [p - prefix_len for p in positions if p >= prefix_len]
                if after:
                    blocks.append(states[k, after])
                for (p, tok), idx in r.reads.items():
                    read_pos.append(local[p])
                    read_tok.append(tok)
                    read_idx.append(idx)
            log_probs = self._log_softmax(torch.cat(blocks))
            pos_t = torch.tensor(read_pos, device=log_probs.device)
            tok_t = torch.tensor(read_tok, device=log_probs.device)
            idx = np.asarray(read_idx)
            read_lp[idx] = log_probs[pos_t, tok_t].double().cpu().numpy()
            read_greedy[idx] = (log_probs.argmax(dim=-1)[pos_t] == tok_t).cpu().numpy()

        self.planner.run([len(r.tokens) - prefix_len for r in rows], run, advance)

    def _cached_prefix(self, tokens: Sequence[int]) -> tuple[tuple[int, ...] | None, int]:
        """(key, common length) of the kept encoding sharing the longest start with ``tokens`` (None, 0 if none
        shares ``min_prefix_tokens``)."""
        best_key, best_len = None, 0
        for key in self._prefix_cache:
            common = _common_prefix_len(key, tokens)
            if common >= self.min_prefix_tokens and common > best_len:
                best_key, best_len = key, common
        return best_key, best_len

    def _encoded_prefix(
        self, tokens: tuple[int, ...]
    ) -> tuple[int, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """(length, states (length, d), KV per layer) for ``tokens``, encoded once and kept.

        Calibrators, measurements and the test set all score the same few-shot prompt in separate
        calls; the cache lets them share one encoding of its demonstrations. A kept encoding that
        covers only the start of ``tokens`` (a 4-shot prompt whose first demonstration is the 1-shot
        prompt's) is cut to the common length (keys and values of a causal model at a position do not
        depend on later tokens) and only the rest is run, on top of it; the longer encoding replaces a
        kept one it extends.
        """
        key, common = self._cached_prefix(tokens)
        kwargs: dict[str, Any] = {"use_cache": True}
        if key is not None:
            self._prefix_cache.move_to_end(key)
            kept_states, kept_kv = self._prefix_cache[key]
            kept_states, kept_kv = kept_states[:common], [(k[:, :, :common], v[:, :, :common]) for k, v in kept_kv]
            if common == len(tokens):
                return common, kept_states, kept_kv
            kwargs[self._cache_kwarg] = broadcast_cache(kept_kv, 1, self.model.config)
            kwargs["position_ids"] = torch.arange(common, len(tokens), device=self.device).unsqueeze(0)
            if common == len(key):
                del self._prefix_cache[key]
        ids = torch.tensor([tokens[common:]], device=self.device)
        out = self._forward_states(ids, torch.ones((1, len(tokens)), dtype=torch.long, device=self.device), **kwargs)
        states, kv = self._states(out)[0], cache_tensors(output_cache(out))
        if key is not None:
            states = torch.cat([kept_states, states])
        if self.prefix_cache_size > 0:
            self._prefix_cache[tokens] = (states, kv)
            while len(self._prefix_cache) > self.prefix_cache_size:
                self._prefix_cache.popitem(last=False)
        return len(tokens), states, kv

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else int(self._prefix_token_id or 0)

    def _right_padded(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask), both (n, longest), padded on the right, on the model's device."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id(), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for k, s in enumerate(seqs):
            ids[k, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[k, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _left_padded(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask) padded on the left, so every row's last token is real (generation)."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id(), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for k, s in enumerate(seqs):
            ids[k, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[k, width - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ public API
    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], *, apply_chat_template: bool = False
    ) -> list[LoglikelihoodResult]:
        if len(requests) == 0:
            raise InvalidRequestError("loglikelihood got an empty request list")
        pairs = self._encode_pairs(requests, apply_chat_template)
        items = [_ScoreItem(tuple(c + x), len(x)) for c, x in pairs]
        return [LoglikelihoodResult(float(lps.sum()), greedy, len(lps)) for lps, greedy in self._score(items)]

    def label_log_probs(
        self,
        prompts: Sequence[str],
        labels: Sequence[str],
        *,
        mode: LabelMode = "first_token",
        length_normalize: bool = False,
        apply_chat_template: bool = False,
    ) -> np.ndarray:
        if len(prompts) == 0:
            raise InvalidRequestError("label_log_probs got no prompts")
        if len(labels) == 0:
            raise InvalidRequestError("label_log_probs got no labels")
        for label in labels:
            if not isinstance(label, str) or not label.strip():
                raise InvalidRequestError(f"label {label!r} is empty; every label needs visible text")
        if len(set(labels)) != len(labels):
            raise InvalidRequestError(f"labels contain duplicates: {list(labels)}")
        if mode not in ("first_token", "full_sequence"):
            raise InvalidRequestError(f"mode must be 'first_token' or 'full_sequence', not {mode!r}")
        n_labels = len(labels)
        requests = [(p, label) for p in prompts for label in labels]
        pairs = self._encode_pairs(requests, apply_chat_template)
        items: list[_ScoreItem] = []
        if mode == "first_token":
            truncated: dict[str, None] = {}
            for i in range(len(prompts)):
                row = pairs[i * n_labels : (i + 1) * n_labels]
                truncated.update((label, None) for label, (_, cont) in zip(labels, row, strict=True) if len(cont) > 1)
                firsts = [cont[0] for _, cont in row]
                if len(set(firsts)) != n_labels:
                    seen: dict[int, str] = {}
                    for label, tok in zip(labels, firsts, strict=True):
                        if tok in seen:
                            raise LabelCollisionError(
                                f"labels {seen[tok]!r} and {label!r} start with the same token "
                                f"({self.tokenizer.decode([tok])!r}) after prompt {i}; first-token scoring "
                                "cannot tell them apart: use mode='full_sequence' or rename the labels"
                            )
                        seen[tok] = label
                items.extend(_ScoreItem((*ctx, tok), 1) for (ctx, _), tok in zip(row, firsts, strict=True))
            if truncated:
                warnings.warn(
                    f"first_token mode scores only the first token of the multi-token label(s) {list(truncated)}; "
                    "use mode='full_sequence' to score them whole",
                    LabelTruncationWarning,
                    stacklevel=2,
                )
        else:
            items = [_ScoreItem(tuple(c + x), len(x)) for c, x in pairs]
        scored = self._score(items)
        values = np.array([lps.sum() / (len(lps) if length_normalize else 1) for lps, _ in scored], dtype=np.float64)
        return values.reshape(len(prompts), n_labels)


__all__ = ["HFBackend"]
