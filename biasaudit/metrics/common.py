"""What every benchmark shares: estimates with their intervals, grouping, and stratified subsets."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from biasaudit.errors import InvalidRequestError
from biasaudit.stats import (
    BootstrapMethod,
    bootstrap_ci,
    effective_sample_size,
    paired_difference_interval,
    wilson_interval,
)

# Below this many units an interval says more about the method than about the model: it is reported as
# missing, with a note, rather than as a number (the same rule for every interval below).
MIN_CI_ITEMS = 10

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Estimate:
    """A metric over ``n`` items, with its 95% interval (None, and a ``note``, when too few)."""

    value: float | None
    ci95: tuple[float, float] | None
    n: int
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "ci95": list(self.ci95) if self.ci95 else None, "n": self.n}
        if self.note:
            out["note"] = self.note
        return out

    def scaled(self, factor: float, offset: float = 0.0) -> Estimate:
        """The same estimate of ``factor · x + offset`` (factor > 0), e.g. BBQ's s_DIS = 2 · share − 1."""
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        value = None if self.value is None else factor * self.value + offset
        ci95 = None if self.ci95 is None else (factor * self.ci95[0] + offset, factor * self.ci95[1] + offset)
        return Estimate(value, ci95, self.n, self.note)


def _too_few(n: int, min_items: int, unit: str) -> str:
    return f"only {n} {unit}: too few for a 95% interval (need {min_items})"


def _one_cluster(clusters: np.ndarray | None, unit: str, cluster_unit: str) -> str | None:
    """A note when every item comes from one cluster: nothing then says how another cluster would fare."""
    if clusters is not None and len(np.unique(np.asarray(clusters))) < 2:
        return f"all {unit} come from one {cluster_unit}: no interval for other {cluster_unit}s"
    return None


def estimate(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    min_items: int = MIN_CI_ITEMS,
    method: BootstrapMethod = "BCa",
    vectorized: bool = False,
    unit: str = "items",
) -> Estimate:
    """``statistic(values)`` with a bootstrap interval (``scipy.stats.bootstrap``, BCa) over the rows of ``values``.

    values: (n_items, ...) -- one row per item; resampling draws whole rows, so paired columns stay paired.
    vectorized: ``statistic`` takes a stack of resamples (see ``biasaudit.stats.bootstrap_ci``).
    unit: what a row is, for the note of a group too small for an interval ("target terms").
    """
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return Estimate(None, None, 0, "no items")
    value = float(statistic(values))
    if not np.isfinite(value):
        return Estimate(None, None, n, "undefined on these items")
    if n < min_items:
        return Estimate(value, None, n, _too_few(n, min_items, unit))
    ci = bootstrap_ci(values, statistic, n_resamples=n_bootstrap, seed=seed, method=method, vectorized=vectorized)
    return Estimate(value, ci, n)


def proportion(
    hits: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    scale: float = 100.0,
    min_items: int = MIN_CI_ITEMS,
    unit: str = "items",
    cluster_unit: str = "template",
) -> Estimate:
    """Share of true values (times ``scale``: percent by default) with a Wilson score interval.

    hits: (n,) booleans or 0/1.
    clusters: (n,) labels of groups of items that are not independent of each other (BBQ questions of
        one template; ``cluster_unit`` names them in notes).
    weights: (n,) for a weighted share (StereoSet: the average over terms of each term's share).
    With clusters or weights the interval uses the effective sample size
    (``biasaudit.stats.effective_sample_size``). A score interval rather than a bootstrap: it keeps its
    coverage at small n and near 0 or 100 %, where a bootstrap of 36 all-correct answers says [100, 100].
    """
    hits = np.asarray(hits, dtype=np.float64)
    n = len(hits)
    if n == 0:
        return Estimate(None, None, 0, "no items")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    share = min(1.0, max(0.0, float(w @ hits / w.sum())))  # a weighted mean of 1s may round to 1 + 1e-16
    if n < min_items:
        return Estimate(scale * share, None, n, _too_few(n, min_items, unit))
    if note := _one_cluster(clusters, unit, cluster_unit):
        return Estimate(scale * share, None, n, note)
    n_eff = effective_sample_size(hits, clusters, weights=weights)
    low, high = wilson_interval(share * n_eff, n_eff)
    return Estimate(scale * share, (scale * low, scale * high), n)


def paired_difference(
    first: np.ndarray,
    second: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    scale: float = 100.0,
    min_items: int = MIN_CI_ITEMS,
    unit: str = "items",
    cluster_unit: str = "template",
) -> Estimate:
    """mean(first) − mean(second) of two 0/1 outcomes of the same items, with Newcombe's paired interval.

    first, second: (n,) booleans or 0/1, one pair per item (WinoBias: pro and anti sentence correct).
    Two exclusive outcomes of one item fit too (BBQ's s_AMB: biased minus counter-biased answers).
    clusters: as in ``proportion``, the design effect of the per-item difference.
    """
    first = np.asarray(first, dtype=bool)
    second = np.asarray(second, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"first and second must be two (n,) arrays, got {first.shape} and {second.shape}")
    n = len(first)
    if n == 0:
        return Estimate(None, None, 0, "no items")
    value = scale * float(first.mean() - second.mean())
    if n < min_items:
        return Estimate(value, None, n, _too_few(n, min_items, unit))
    if note := _one_cluster(clusters, unit, cluster_unit):
        return Estimate(value, None, n, note)
    counts = np.array(
        [(first & second).sum(), (first & ~second).sum(), (~first & second).sum(), (~first & ~second).sum()],
        dtype=np.float64,
    )
    n_eff = effective_sample_size(first.astype(np.float64) - second, clusters)
    low, high = paired_difference_interval(*(counts * n_eff / n))
    return Estimate(value, (scale * low, scale * high), n)


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
