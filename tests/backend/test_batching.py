"""BatchPlanner: every item exactly once, longest first, budget respected, OOM halves and retries."""

from __future__ import annotations

import numpy as np
import pytest

from biasaudit.backend.batching import BatchPlanner, is_out_of_memory


def test_batches_cover_all_items_longest_first_within_budget():
    lengths = [5, 50, 7, 20, 20, 1, 33]
    planner = BatchPlanner("auto", max_batch_tokens=60)
    seen = []
    planner.run(lengths, lambda b: seen.append(b.tolist()))
    flat = [i for b in seen for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert all(len(b) * max(lengths[i] for i in b) <= 60 for b in seen)


def test_integer_batch_size_caps_rows():
    planner = BatchPlanner(3, max_batch_tokens=10_000)
    sizes = []
    planner.run([1] * 10, lambda b: sizes.append(len(b)))
    assert sizes == [3, 3, 3, 1]


def test_out_of_memory_halves_the_budget_and_retries_the_same_items():
    fits = 4

    def fn(batch: np.ndarray) -> None:
        if len(batch) > fits:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        done.extend(batch.tolist())

    done: list[int] = []
    planner = BatchPlanner("auto", max_batch_tokens=160)
    advanced = []
    planner.run([10] * 20, fn, advance=advanced.append)
    assert sorted(done) == list(range(20))
    assert planner.max_batch_tokens == 40  # 16 rows -> 8 -> 4: the budget that worked is kept
    assert sum(advanced) == 20


def test_out_of_memory_on_a_single_item_is_raised():
    planner = BatchPlanner("auto", max_batch_tokens=10)

    def fn(batch):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        planner.run([10, 10], fn)


def test_other_errors_are_not_retried():
    calls = []

    def fn(batch):
        calls.append(len(batch))
        raise ValueError("bug")

    with pytest.raises(ValueError):
        BatchPlanner("auto", 100).run([1, 1, 1], fn)
    assert calls == [3]


@pytest.mark.parametrize("bad", [0, -1, "big", 1.5])
def test_bad_batch_size_is_refused(bad):
    with pytest.raises(ValueError, match="batch_size"):
        BatchPlanner(bad)


def test_is_out_of_memory():
    assert is_out_of_memory(RuntimeError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
