"""Small statistics shared by every method: score intervals for shares, bootstrap intervals for the rest.

* ``wilson_interval``: a binomial proportion (Wilson 1927). Unlike any bootstrap it stays honest at
  small n and near 0 or 1 (Brown, Cai & DasGupta 2001, Statistical Science 16:101): an all-correct
  sample of 36 gives [0.90, 1], where a bootstrap gives the point [1, 1].
* ``paired_difference_interval``: p1 − p2 of two 0/1 outcomes measured on the same units (Newcombe 1998,
  Statistics in Medicine 17:2635, method 10, the "square-and-add" of two Wilson intervals).
* ``effective_sample_size``: what n the two score intervals should use when units come in clusters
  (BBQ questions written from one template): n over the design effect, with Korn & Graubard's (1998,
  Survey Methodology 24:193) degrees-of-freedom adjustment for the number of clusters.
* ``bootstrap_ci``: ``scipy.stats.bootstrap`` (BCa by default) over whole rows or whole clusters, for
  statistics with no closed-form interval (other methods' ratios and distances).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

from biasaudit.errors import InvalidRequestError

BootstrapMethod = Literal["BCa", "percentile", "basic"]


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InvalidRequestError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: float, n: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``, on 0 .. 1.

    ``successes`` and ``n`` may be non-integer effective counts (``effective_sample_size``); with integers
    it equals ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
    """
    if not n > 0:
        raise InvalidRequestError(f"a proportion needs n > 0, got {n}")
    if not 0.0 <= successes <= n:
        raise InvalidRequestError(f"successes must lie in [0, n], got {successes} of {n}")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(
    both: float, first_only: float, second_only: float, neither: float, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval for p1 − p2 = (first_only − second_only) / n from a paired 2×2 table, on −1 .. 1.

    Newcombe (1998) method 10: the Wilson limits of p1 and p2 combined by "square and add", with the
    correlation φ of the two outcomes, its numerator shrunk by n/2 towards 0 when positive (Newcombe's
    correction; as in Fagerland, Lydersen & Laake 2017, *Statistical Analysis of Contingency Tables*,
    §8). Counts may be non-integer effective counts. Three outcomes of one unit fit too: BBQ's s_AMB is
    P(biased) − P(counter-biased) with ``both = 0``.
    """
    a, b, c, d = (float(x) for x in (both, first_only, second_only, neither))
    if min(a, b, c, d) < 0:
        raise InvalidRequestError(f"counts must be non-negative, got {(a, b, c, d)}")
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, confidence=confidence)
    l2, u2 = wilson_interval(a + c, n, confidence=confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if margins == 0:
        phi = 0.0
    elif cross > n / 2.0:
        phi = (cross - n / 2.0) / math.sqrt(margins)
    elif cross >= 0:
        phi = 0.0
    else:
        phi = cross / math.sqrt(margins)
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2.0 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, p1 - p2 - delta), min(1.0, p1 - p2 + epsilon)


def effective_sample_size(
    values: np.ndarray,
    clusters: np.ndarray | None = None,
    *,
    weights: np.ndarray | None = None,
    confidence: float = 0.95,
) -> float:
    """The number of independent units the (weighted) mean of ``values`` (n,) is worth.

    The mean is Σ w·y / Σ w (weights default to 1). Without clusters or weights: n. Otherwise
    n · V_iid / V_design (Kish's n over the design effect), where V_design is the cluster-robust
    (linearised) variance of the mean, each of ``clusters`` (n,) labels being one independent unit, and
    V_iid the variance of an unweighted mean of n independent values. It is capped at Kish's
    (Σ w)² / Σ w² (n when unweighted): a within-cluster correlation never buys precision here, and a
    sample with no spread (all 0 or all 1, where V_design says nothing) gets that cap. Then, with C
    clusters, it is multiplied by (t_{n−1} / t_{C−1})² (Korn & Graubard 1998), so that a score interval
    built on it reflects how few clusters the variance was estimated from.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != values.shape or (n and (w.min() < 0 or w.sum() <= 0)):
        raise InvalidRequestError("weights must be (n,) non-negative numbers with a positive sum, like values")
    if n < 2:
        return float(n)
    kish = float(w.sum() ** 2 / (w @ w))
    if clusters is None:
        labels = np.arange(n)
    else:
        labels = np.unique(np.asarray(clusters), return_inverse=True)[1].reshape(-1)
        if len(labels) != n:
            raise InvalidRequestError(f"clusters must label every value: {len(labels)} labels for {n} values")
    n_clusters = int(labels.max()) + 1
    if n_clusters < 2:
        raise InvalidRequestError("a clustered interval needs at least 2 clusters, got 1")
    if weights is None and n_clusters == n:
        return float(n)
    mean = float(w @ values / w.sum())
    iid_variance = float(np.var(values, ddof=1)) / n
    totals = np.bincount(labels, weights=w * (values - mean)) / w.sum()
    design_variance = n_clusters / (n_clusters - 1) * float(totals @ totals)
    # a constant sample: no spread for the design variance to measure (and rounding must not invent one)
    n_eff = kish if np.ptp(values) == 0 or design_variance <= 0 else min(kish, n * iid_variance / design_variance)
    if n_clusters < n:
        tail = 0.5 + confidence / 2.0
        n_eff *= float(sps.t.ppf(tail, n - 1) / sps.t.ppf(tail, n_clusters - 1)) ** 2
    return float(n_eff)


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    method: BootstrapMethod = "BCa",
    clusters: np.ndarray | None = None,
    vectorized: bool = False,
) -> tuple[float, float]:
    """Bootstrap interval of ``statistic`` over the first axis of ``values`` (``scipy.stats.bootstrap``).

    values: (n, ...) -- whole rows are resampled, so paired columns stay paired.
    method: "BCa" (default: bias-corrected and accelerated, Efron 1987), "percentile" or "basic".
    clusters: (n,) labels; whole clusters are resampled (and left out, for BCa's jackknife) instead of
        rows, for rows that are not independent (several questions from one template).
    vectorized: ``statistic`` accepts a stack of resamples, (..., n, ...) -> (...), reducing over the
        axis of rows (write it with ``rows[..., j]`` and ``axis=-1``); much faster for many resamples.

    Seeded: the same inputs always give the same interval. A statistic that is the same in every
    resample (a constant sample) gives the point interval (value, value). A statistic that is undefined
    (NaN) in some resamples gives (nan, nan): the caller says so instead of reporting the lucky resamples.
    Where BCa itself is undefined (its jackknife is flat or undefined), the percentile interval is used.
    """
    values = np.asarray(values)
    if len(values) < 2:
        raise InvalidRequestError(f"a bootstrap interval needs at least 2 values, got {len(values)}")
    if clusters is not None:
        labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        if len(inverse) != len(values):
            raise InvalidRequestError(f"clusters must label every row: {len(inverse)} labels for {len(values)} rows")
        if len(labels) < 2:
            raise InvalidRequestError("a cluster bootstrap needs at least 2 clusters, got 1")
        members = [np.flatnonzero(inverse == k) for k in range(len(labels))]

        def on_units(units: np.ndarray) -> float:
            return statistic(values[np.concatenate([members[k] for k in units])])

        unit_statistic: Callable[..., float] = on_units
        n_units, unit_vectorized = len(labels), False
    else:

        def on_rows(rows: np.ndarray, axis: int = -1) -> float:
            return statistic(values[rows])

        unit_statistic = on_rows
        n_units, unit_vectorized = len(values), vectorized
    with warnings.catch_warnings():
        # Degenerate and NaN cases are handled below, with the reason in the docstring.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        result = sps.bootstrap(
            (np.arange(n_units),),
            unit_statistic,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            vectorized=unit_vectorized,
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    if np.isfinite(low) and np.isfinite(high):
        return float(low), float(high)
    replicates = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    if not np.all(np.isfinite(replicates)):
        return float("nan"), float("nan")
    if np.ptp(replicates) == 0:
        return float(replicates[0]), float(replicates[0])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


# Below this many pairs a rank-correlation interval does not cover: Bonett and Wright's Fisher-z interval
# and a bootstrap over pairs both covered a population rho of 0.89 in ~75% of simulated samples of 5.
MIN_PAIRS_FOR_RHO_CI = 10


def rho_interval(rho: float, n: int, *, confidence: float = 0.95) -> tuple[float, float] | None:
    """CI of a population Spearman rho from a sample rho of ``n`` pairs: Fisher's z with Bonett & Wright's
    (2000, Psychometrika 65:23) variance (1 + rho^2 / 2) / (n - 3); None below ``MIN_PAIRS_FOR_RHO_CI``."""
    if n < MIN_PAIRS_FOR_RHO_CI or not np.isfinite(rho):
        return None
    r = min(max(rho, -0.9999), 0.9999)
    half = _z(confidence) * math.sqrt((1.0 + r * r / 2.0) / (n - 3))
    return math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)


def rank_correlation(x: np.ndarray, y: np.ndarray, *, confidence: float = 0.95) -> dict[str, float | int | None]:
    """Spearman's rho of paired values, an exact permutation p-value, and from 10 pairs a CI.

    p: two-sided ``scipy.stats.permutation_test`` over every pairing when n! <= 50,000 (n <= 8), else
    50,000 random pairings; its size is alpha whatever n is. CI: ``rho_interval`` (None below 10 pairs).
    Returns {"rho", "p_value", "ci_low", "ci_high", "n"}.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(xs)
    if n != len(ys) or n < 3:
        raise InvalidRequestError(
            f"rank correlation needs at least 3 pairs of equal length, got {len(xs)} and {len(ys)}"
        )
    # Spearman's rho is Pearson's r of the ranks; ranking once lets the permutations run vectorised.
    rx, ry = sps.rankdata(xs), sps.rankdata(ys)
    ry = (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())

    def rho_of(a: np.ndarray, axis: int = -1) -> np.ndarray:
        centred = a - a.mean(axis=axis, keepdims=True)
        return np.sum(centred * ry, axis=axis) / np.linalg.norm(centred, axis=axis)

    rho = float(rho_of(rx))
    test = sps.permutation_test(
        (rx,), rho_of, permutation_type="pairings", n_resamples=50_000, vectorized=True,
        alternative="two-sided", rng=np.random.default_rng(0),
    )  # fmt: skip
    ci = rho_interval(rho, n, confidence=confidence)
    return {"rho": rho, "p_value": float(test.pvalue), "ci_low": ci[0] if ci else None,
            "ci_high": ci[1] if ci else None, "n": n}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Estimates: a value with its interval, or a note saying why it has none.

# Below this many units an interval says more about the method than about the model: it is reported as
# missing, with a note, rather than as a number (the same rule for every interval below).
MIN_CI_ITEMS = 10


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
            raise InvalidRequestError(f"factor must be positive, got {factor}")
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
        raise InvalidRequestError(f"first and second must be two (n,) arrays, got {first.shape} and {second.shape}")
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
