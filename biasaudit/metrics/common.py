"""What every benchmark shares: estimates with their intervals, grouping, and stratified subsets."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np

from biasaudit.errors import InvalidRequestError

K = TypeVar("K", bound=Hashable)


def percent(hits: np.ndarray) -> float:
    """Share of true values, in percent. hits: (n,) booleans or 0/1."""
    return 100.0 * float(np.mean(hits))


def group_indices(keys: Sequence[K]) -> dict[K, np.ndarray]:
    """{key: positions holding it}, keys sorted, positions ascending."""
    groups: dict[K, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    return {key: np.array(groups[key], dtype=np.int64) for key in sorted(groups)}  # type: ignore[type-var]


def _largest_remainder(total: int, sizes: np.ndarray) -> np.ndarray:
    """Integer quotas proportional to ``sizes`` summing to ``total`` (Hamilton's method; ties by order)."""
    if total == 0 or sizes.sum() == 0:
        return np.zeros(len(sizes), dtype=np.int64)
    exact = total * sizes / sizes.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - int(quota.sum())]] += 1
    return quota


def stratified_sample(keys: Sequence[Hashable], limit: int | None, seed: int) -> list[int]:
    """Positions of a seeded subset of at most ``limit`` items, stratified by ``keys``, in original order.

    Each category keeps its share of the items (largest-remainder rounding); when ``limit`` is at least
    the number of categories, every category keeps at least one item, so none silently disappears.
    """
    n = len(keys)
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise InvalidRequestError(f"limit must be a positive number of items, got {limit}")
    groups = group_indices([repr(k) for k in keys])
    sizes = np.array([len(g) for g in groups.values()], dtype=np.int64)
    if limit >= len(groups):
        quotas = 1 + _largest_remainder(limit - len(groups), sizes - 1)
    else:
        quotas = _largest_remainder(limit, sizes)
    rng = random.Random(seed)
    chosen: list[int] = []
    for positions, quota in zip(groups.values(), quotas, strict=True):
        chosen.extend(rng.sample(positions.tolist(), int(quota)))
    return sorted(chosen)
