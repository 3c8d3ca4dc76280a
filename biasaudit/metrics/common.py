"""What every benchmark shares: estimates with bootstrap intervals, grouping, and stratified subsets."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from biasaudit.errors import InvalidRequestError
from biasaudit.stats import bootstrap_ci

# Below this many items a percentile bootstrap says more about the resampling than about the model:
# the interval is reported as missing, with a note, rather than as a number.
MIN_CI_ITEMS = 10

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Estimate:
    """A metric over ``n`` items, with its 95% bootstrap interval (None, and a ``note``, when too few)."""

    value: float | None
    ci95: tuple[float, float] | None
    n: int
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "ci95": list(self.ci95) if self.ci95 else None, "n": self.n}
        if self.note:
            out["note"] = self.note
        return out


def estimate(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    min_items: int = MIN_CI_ITEMS,
) -> Estimate:
    """``statistic(values)`` with a percentile bootstrap interval over the rows of ``values``.

    values: (n_items, ...) -- one row per item; resampling draws whole rows, so paired columns stay paired.
    """
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return Estimate(None, None, 0, "no items")
    value = float(statistic(values))
    if not np.isfinite(value):
        return Estimate(None, None, n, "undefined on these items")
    if n < min_items:
        return Estimate(value, None, n, f"only {n} items: too few for a 95% interval (need {min_items})")
    return Estimate(value, bootstrap_ci(values, statistic, n_resamples=n_bootstrap, seed=seed), n)


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
