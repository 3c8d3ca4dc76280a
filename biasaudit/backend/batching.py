"""Length-sorted batching under a token budget, with automatic batch size (halve and retry on OOM).

Lives once here so that scoring, generation and hidden-state extraction batch the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal, TypeVar

import numpy as np
import torch

from biasaudit.errors import InvalidRequestError

BatchSize = int | Literal["auto"]
# Token budget per batch when batch_size="auto": generous on accelerators (halved on OOM); on the CPU
# throughput stops growing long before memory runs out, so the start is modest.
AUTO_BUDGET = {"cpu": 4096, "accelerator": 65536}
T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator (or host) out-of-memory error worth retrying smaller."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_accelerator_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class BatchPlanner:
    """Cuts work into batches, longest items first, each within ``rows x longest <= max_batch_tokens``.

    ``batch_size="auto"`` starts from a generous token budget and halves it whenever a batch runs out
    of memory; the budget that worked is kept for later calls, so the search happens once. An integer
    ``batch_size`` caps the rows per batch (and is still halved on OOM rather than crashing).
    Sorting by length keeps padding low and puts the most memory-hungry batch first, so an OOM shows up
    at once instead of at the end of a long run.
    """

    def __init__(self, batch_size: BatchSize = "auto", max_batch_tokens: int = 8192) -> None:
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise InvalidRequestError(f"batch_size must be a positive integer or 'auto', not {batch_size!r}")
        if max_batch_tokens < 1:
            raise InvalidRequestError("max_batch_tokens must be positive")
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_rows: int | None = None if batch_size == "auto" else int(batch_size)

    def _rows_for(self, length: int) -> int:
        rows = max(1, self.max_batch_tokens // max(1, length))
        if self.max_rows is not None:
            rows = min(rows, self.max_rows)
        return rows

    def map(self, lengths: Sequence[int], fn: Callable[[np.ndarray], T]) -> Iterator[tuple[np.ndarray, T]]:
        """Yield ``(indices, fn(indices))`` for batches covering every item exactly once, longest first."""
        lengths_arr = np.asarray(lengths, dtype=np.int64)
        order = np.argsort(-lengths_arr, kind="stable")
        start = 0
        while start < len(order):
            longest = int(lengths_arr[order[start]])
            batch = order[start : start + self._rows_for(longest)]
            try:
                result = fn(batch)
            except Exception as exc:
                if not is_out_of_memory(exc) or len(batch) == 1:
                    raise
                _free_accelerator_memory()
                self.max_batch_tokens = max(longest, (len(batch) // 2) * longest)
                if self.max_rows is not None:
                    self.max_rows = max(1, len(batch) // 2)
                continue
            start += len(batch)
            yield batch, result

    def run(
        self,
        lengths: Sequence[int],
        fn: Callable[[np.ndarray], object],
        advance: Callable[[int], None] | None = None,
    ) -> None:
        """Call ``fn(indices)`` on every batch (see ``map``), advancing a progress bar as it goes."""
        for batch, _ in self.map(lengths, fn):
            if advance is not None:
                advance(len(batch))
