"""Residual-stream extraction for ``HFBackend`` (mixed in): pooled per text, or every token.

Hooks on the decoder blocks capture the requested layers; the forward pass stops after the deepest
one (``_StopForward``), so layer 5 of a 30-layer model costs a sixth of a forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from biasaudit.backend.protocol import Pooling, TokenStates
from biasaudit.errors import InvalidRequestError, LayerOutOfRangeError
from biasaudit.progress import PROGRESS_MIN_ITEMS, progress_bar

# Mean pooling leaves out the first position: its residual stream is an attention sink with a norm
# orders of magnitude above the rest (BOS or not), which would dominate the mean, and SAEs are trained
# with it skipped (``SAETrainingConfig.skip_positions``), so a mean including it is out of distribution.
MEAN_POOL_SKIP = 1


class _StopForward(Exception):
    """Raised by a hook once the deepest requested layer has run: the rest of the model is skipped."""


class HiddenStatesMixin:
    """``hidden_states``, ``iter_hidden_states`` and ``iter_token_states``; see the module docstring."""

    model: Any
    name: str
    n_layers: int
    progress: bool
    planner: Any
    hidden_size: int
    _decoder_layers: Any
    _body: Any
    _prefix_token_id: int
    # Provided by the host class (``HFBackend``).
    _encode_many: Callable[[Sequence[str]], list[list[int]]]
    _right_padded: Callable[[Sequence[Sequence[int]]], tuple[torch.Tensor, torch.Tensor]]

    def _normalise_layers(self, layers: Sequence[int]) -> list[int]:
        if len(layers) == 0:
            raise InvalidRequestError("hidden_states needs at least one layer")
        out = []
        for layer in layers:
            if not isinstance(layer, int | np.integer):
                raise InvalidRequestError(f"layer {layer!r} is not an integer")
            value = int(layer) + (self.n_layers + 1 if layer < 0 else 0)
            if not 0 <= value <= self.n_layers:
                raise LayerOutOfRangeError(
                    f"layer {layer} is out of range: {self.name} has layers 0 (embeddings) to {self.n_layers}"
                )
            out.append(value)
        return sorted(set(out))

    def iter_hidden_states(
        self, texts: Sequence[str], layers: Sequence[int], *, pooling: Pooling = "last"
    ) -> Iterator[tuple[np.ndarray, dict[int, np.ndarray]]]:
        if len(texts) == 0:
            raise InvalidRequestError("hidden_states got no texts")
        if pooling not in ("last", "mean"):
            raise InvalidRequestError(f"pooling must be 'last' or 'mean', not {pooling!r}")
        wanted = self._normalise_layers(layers)
        encoded = [ids or [self._prefix_token_id] for ids in self._encode_many(texts)]
        deepest = max(wanted)
        yield from self.planner.map(
            [len(e) for e in encoded],
            lambda batch: self._hidden_batch([encoded[b] for b in batch], wanted, deepest, pooling),
        )

    def _hidden_batch(
        self, seqs: list[list[int]], wanted: list[int], deepest: int, pooling: Pooling
    ) -> dict[int, np.ndarray]:
        """Pooled residual stream of one right-padded batch; stops the forward after ``deepest``."""
        ids, mask = self._right_padded(seqs)
        lengths = mask.sum(dim=1)

        def pool(h: torch.Tensor) -> torch.Tensor:
            if pooling == "last":
                return h[torch.arange(h.shape[0], device=h.device), lengths - 1]
            # Position 0 is left out of the mean (``MEAN_POOL_SKIP``), except in one-token texts.
            keep = mask.clone()
            keep[lengths > MEAN_POOL_SKIP, :MEAN_POOL_SKIP] = 0
            m = keep.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(dim=1) / keep.sum(dim=1, keepdim=True).to(h.dtype)

        return self._capture_layers(ids, mask, wanted, deepest, pool)

    def _capture_layers(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        wanted: list[int],
        deepest: int,
        reduce: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict[int, np.ndarray]:
        """``reduce(residual stream)`` at each wanted layer, via hooks; the forward stops after ``deepest``.

        Hooks read the decoder blocks' outputs, so the last layer is the residual stream before the
        final norm (``output_hidden_states`` applies the norm to its last entry).
        """
        captured: dict[int, torch.Tensor] = {}

        def capture(layer: int):
            def hook(_module: Any, _args: Any, output: Any) -> None:
                h = output[0] if isinstance(output, tuple) else output
                captured[layer] = reduce(h).float().cpu()
                if layer == deepest:
                    raise _StopForward

            return hook

        def capture_embeddings(_module: Any, args: Any, kwargs: Any) -> None:
            h = args[0] if args else kwargs["hidden_states"]
            captured[0] = reduce(h).float().cpu()
            if deepest == 0:
                raise _StopForward

        handles = []
        if 0 in wanted:
            handles.append(self._decoder_layers[0].register_forward_pre_hook(capture_embeddings, with_kwargs=True))
        for layer in wanted:
            if layer > 0:
                handles.append(self._decoder_layers[layer - 1].register_forward_hook(capture(layer)))
        try:
            with torch.inference_mode():
                self._body(input_ids=ids, attention_mask=mask, use_cache=False)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return {layer: captured[layer].numpy() for layer in wanted}

    def iter_token_states(
        self, texts: Sequence[str], layers: Sequence[int], *, skip_positions: int = 1
    ) -> Iterator[TokenStates]:
        if len(texts) == 0:
            raise InvalidRequestError("token states got no texts")
        if skip_positions < 0:
            raise InvalidRequestError(f"skip_positions must be >= 0, not {skip_positions}")
        wanted = self._normalise_layers(layers)
        encoded = self._encode_many(texts)
        keep = [k for k, e in enumerate(encoded) if len(e) > skip_positions]
        if not keep:
            return
        deepest = max(wanted)

        def run(batch: np.ndarray) -> TokenStates:
            rows = [keep[b] for b in batch]
            ids, mask = self._right_padded([encoded[r] for r in rows])
            select = mask.bool().clone()
            select[:, :skip_positions] = False
            values = self._capture_layers(ids, mask, wanted, deepest, lambda h: h[select])
            row_of, position = select.nonzero(as_tuple=True)
            return TokenStates(
                text_index=np.asarray(rows, dtype=np.int64)[row_of.cpu().numpy()],
                position=position.cpu().numpy().astype(np.int64),
                values=values,
            )

        for _batch, states in self.planner.map([len(encoded[k]) for k in keep], run):
            yield states

    def hidden_states(
        self, texts: Sequence[str], layers: Sequence[int], *, pooling: Pooling = "last"
    ) -> dict[int, np.ndarray]:
        wanted = self._normalise_layers(layers)
        out = {layer: np.zeros((len(texts), self.hidden_size), dtype=np.float32) for layer in wanted}
        with progress_bar(
            "hidden states", len(texts), enabled=self.progress and len(texts) >= PROGRESS_MIN_ITEMS
        ) as advance:
            for batch, pooled in self.iter_hidden_states(texts, wanted, pooling=pooling):
                for layer, values in pooled.items():
                    out[layer][batch] = values
                advance(len(batch))
        return out
