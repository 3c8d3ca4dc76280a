"""Dose-response of one metric over planted adapters: does the score move with the planted dose?

Input: one point per adapter, (dose, seed, the metric's estimate and its own 95% CI). Output:

* **Spearman ρ** between dose and estimate over all adapters, with the p-value and, from 10 adapters,
  the 95% CI of ``biasaudit.stats.rank_correlation`` (a permutation test; Fisher z with the
  Bonett–Wright standard error, Bonett & Wright 2000). The effect *tracks the dose* when that CI
  excludes 0 (with fewer adapters: when p < 0.05); and the same against the distance |d − 0.5| from the
  placebo, for effects that measure a bias's size without its side (a distance from uniform rises on
  both sides of the placebo, flat against d but monotone against |d − 0.5|);
* **slope per dose unit** (ordinary least squares of estimate on dose) with its t interval on n − 2
  degrees of freedom: seeds are the replicates, so seed-to-seed variation is in the residuals;
* **minimum detectable bias**: the smallest distance |d − 0.5| from the placebo whose seed-mean
  estimate lies outside the placebo envelope (the hull of the placebo adapters' own CIs), on either
  side; None when no dose gets out. Descriptive, not a test: it says how large a planted dose this
  metric separates from fine-tuning noise on this model;
* **signal-to-noise**: |slope| over the mean half-width of the metric's own CIs — how many of its own
  CI half-widths the metric moves from d = 0 to d = 1.

The slope interval and the p-value on this design are checked by simulation with a known truth
(tests/sensitivity; the ρ interval in tests/stats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from biasaudit.errors import InvalidRequestError
from biasaudit.stats import rank_correlation, rho_interval

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
    spearman_ci: tuple[float, float] | None  # None below 10 adapters (stats.MIN_PAIRS_FOR_RHO_CI)
    spearman_p: float
    slope: float
    slope_ci: tuple[float, float]
    # The same against the distance from the placebo |d − 0.5|: the strength of the planting whichever side it
    # takes. An unsigned effect (a distance from uniform, such as the ICL label biases) rises on both sides of
    # the placebo, so it is flat against d and monotone against |d − 0.5|.
    strength_spearman: float
    strength_spearman_ci: tuple[float, float] | None
    strength_spearman_p: float
    minimum_detectable: float | None
    signal_to_noise: float
    by_dose: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tracks_dose(self) -> bool:
        """Whether the score moves with the dose d: ρ's CI excludes 0 (without a CI: p < 0.05)."""
        return _excludes_zero(self.spearman_ci, self.spearman_p)

    @property
    def tracks_strength(self) -> bool:
        """Whether the score moves with the distance |d − 0.5| from the placebo (either side planted)."""
        return _excludes_zero(self.strength_spearman_ci, self.strength_spearman_p)

    @property
    def moves(self) -> bool:
        """Whether the effect moves with the dose or with its distance from the placebo."""
        return self.tracks_dose or self.tracks_strength


def _excludes_zero(ci: tuple[float, float] | None, p: float) -> bool:
    return p < 0.05 if ci is None else (ci[0] > 0 or ci[1] < 0)


def spearman_with_ci(x: np.ndarray, y: np.ndarray) -> tuple[float, tuple[float, float] | None, float]:
    """Spearman ρ, its CI (None below 10 points) and permutation p (``stats.rank_correlation``); a constant
    ``x`` or ``y`` has no association: ρ = 0, p = 1."""
    if np.ptp(y) == 0 or np.ptp(x) == 0:
        return 0.0, rho_interval(0.0, len(x)), 1.0
    correlation = rank_correlation(x, y)
    low, high = correlation["ci_low"], correlation["ci_high"]
    ci = None if low is None or high is None else (float(low), float(high))
    return float(correlation["rho"]), ci, float(correlation["p_value"])  # type: ignore[arg-type]


def slope_interval(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> tuple[float, tuple[float, float]]:
    """OLS slope of y on x and its t interval (n − 2 degrees of freedom)."""
    fit = stats.linregress(x, y)
    q = stats.t.ppf(0.5 + confidence / 2, len(x) - 2)
    return float(fit.slope), (float(fit.slope - q * fit.stderr), float(fit.slope + q * fit.stderr))


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
    rho, ci, p_value = spearman_with_ci(x, y)
    strength, strength_ci, strength_p = spearman_with_ci(np.abs(x - PLACEBO), y)
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
        spearman_ci=ci,
        spearman_p=p_value,
        slope=slope,
        slope_ci=slope_ci,
        strength_spearman=strength,
        strength_spearman_ci=strength_ci,
        strength_spearman_p=strength_p,
        minimum_detectable=min(detectable) if detectable else None,
        signal_to_noise=abs(slope) / mean_half if mean_half > 0 else math.inf,
        by_dose=by_dose,
    )
