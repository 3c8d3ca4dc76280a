"""Dose-response of one metric over planted adapters: does the score move with the planted dose?

Input: one point per adapter, (dose, seed, the metric's estimate and its own 95% CI). Output:

* **Spearman ρ** between dose and estimate over all adapters, its 95% CI (Fisher z with the
  Bonett–Wright standard error sqrt((1 + ρ²/2) / (n − 3)), Bonett & Wright 2000) and an exact
  permutation p-value (H0: the estimates do not depend on the dose);
* **slope per dose unit** (ordinary least squares of estimate on dose) with its t interval on n − 2
  degrees of freedom: seeds are the replicates, so seed-to-seed variation is in the residuals;
* **minimum detectable bias**: the smallest distance |d − 0.5| from the placebo whose seed-mean
  estimate lies outside the placebo envelope (the hull of the placebo adapters' own CIs), on either
  side; None when no dose gets out. Descriptive, not a test: it says how large a planted dose this
  metric separates from fine-tuning noise on this model;
* **signal-to-noise**: |slope| over the mean half-width of the metric's own CIs — how many of its own
  CI half-widths the metric moves from d = 0 to d = 1.

The interval and the p-value are checked by simulation with a known truth (tests/sensitivity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from biasaudit.errors import InvalidRequestError

PLACEBO = 0.5


@dataclass(frozen=True)
class DosePoint:
    """One adapter's reading of one metric."""

    dose: float
    seed: int
    estimate: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class DoseResponse:
    metric: str
    n: int
    spearman: float
    spearman_ci: tuple[float, float]
    spearman_p: float
    slope: float
    slope_ci: tuple[float, float]
    minimum_detectable: float | None
    signal_to_noise: float
    by_dose: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tracks_dose(self) -> bool:
        """Whether the score moves with the dose: ρ's CI excludes 0."""
        low, high = self.spearman_ci
        return low > 0 or high < 0


def spearman_interval(rho: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval for Spearman's ρ with the Bonett–Wright standard error."""
    if n < 4:
        raise InvalidRequestError(f"a Spearman interval needs at least 4 points, got {n}")
    z = math.atanh(max(min(rho, 1 - 1e-12), -1 + 1e-12))
    se = math.sqrt((1 + rho**2 / 2) / (n - 3))
    q = stats.norm.ppf(0.5 + confidence / 2)
    return math.tanh(z - q * se), math.tanh(z + q * se)


def slope_interval(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> tuple[float, tuple[float, float]]:
    """OLS slope of y on x and its t interval (n − 2 degrees of freedom)."""
    fit = stats.linregress(x, y)
    q = stats.t.ppf(0.5 + confidence / 2, len(x) - 2)
    return float(fit.slope), (float(fit.slope - q * fit.stderr), float(fit.slope + q * fit.stderr))


def permutation_p(x: np.ndarray, y: np.ndarray, seed: int = 0, n_resamples: int = 9999) -> float:
    """Two-sided permutation p-value of Spearman's ρ (exact when the permutations are fewer than
    ``n_resamples``): ρ is the Pearson correlation of the ranks, so permuting the ranks of y suffices."""
    if np.ptp(y) == 0:
        return 1.0
    rx = stats.rankdata(x)
    rx = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean())

    def rho(ry: np.ndarray, axis: int = -1) -> np.ndarray:
        centred = ry - ry.mean(axis=axis, keepdims=True)
        return np.sum(centred * rx, axis=axis) / np.linalg.norm(centred, axis=axis)

    result = stats.permutation_test(
        (stats.rankdata(y),),
        rho,
        permutation_type="pairings",
        n_resamples=n_resamples,
        alternative="two-sided",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def dose_response(metric: str, points: Sequence[DosePoint]) -> DoseResponse:
    """The dose-response summary of one metric (see the module docstring)."""
    if len({p.dose for p in points}) < 3:
        raise InvalidRequestError(f"{metric}: a dose-response needs at least 3 distinct doses")
    if not any(p.dose == PLACEBO for p in points):
        raise InvalidRequestError(f"{metric}: the placebo dose {PLACEBO} is missing")
    x = np.array([p.dose for p in points], dtype=float)
    y = np.array([p.estimate for p in points], dtype=float)
    if not np.all(np.isfinite(y)):
        raise InvalidRequestError(f"{metric}: every estimate must be finite")
    rho = 0.0 if np.ptp(y) == 0 else float(stats.spearmanr(x, y).statistic)
    slope, slope_ci = slope_interval(x, y)
    half_widths = [(p.ci[1] - p.ci[0]) / 2 for p in points]
    mean_half = float(np.mean(half_widths))
    placebo = [p for p in points if p.dose == PLACEBO]
    envelope = (min(p.ci[0] for p in placebo), max(p.ci[1] for p in placebo))
    by_dose: dict[str, dict[str, float]] = {}
    detectable = []
    for dose in sorted({p.dose for p in points}):
        at = [p.estimate for p in points if p.dose == dose]
        mean = float(np.mean(at))
        by_dose[f"{dose:g}"] = {"mean": mean, "min": float(min(at)), "max": float(max(at)), "n": float(len(at))}
        if dose != PLACEBO and not envelope[0] <= mean <= envelope[1]:
            detectable.append(abs(dose - PLACEBO))
    return DoseResponse(
        metric=metric,
        n=len(points),
        spearman=rho,
        spearman_ci=spearman_interval(rho, len(points)),
        spearman_p=permutation_p(x, y),
        slope=slope,
        slope_ci=slope_ci,
        minimum_detectable=min(detectable) if detectable else None,
        signal_to_noise=abs(slope) / mean_half if mean_half > 0 else math.inf,
        by_dose=by_dose,
    )
