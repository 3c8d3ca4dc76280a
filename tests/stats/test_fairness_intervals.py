"""Do ``GroupFairness``'s intervals cover the truth? Per-group rates and fairlearn's between-group gaps.

Each dataset is drawn from a population with known group rates: a group's rows get a label with its
base rate, then a prediction with its TPR (label 1) or FPR (label 0); its selection rate is
base · TPR + (1 − base) · FPR. Groups have fixed sizes (a stratified design, like the bootstrap). The
procedures checked are the ones ``GroupFairness.fit`` reports with: ``rate_estimate`` for a group's rate,
``between_group_gaps`` for the gaps (``tests/test_fairness.py`` checks fit equals them), with the default
1000 replicates. A gap is "found" when its interval excludes 0; its size is checked under equal rates.

Figures measured when this was written (seeded; 400 datasets at the default scale, 2000 with
BIASAUDIT_SIM_SCALE=5), coverage of the nominal 95% interval:
  selection rate of group a (truth 0.30)        0.955 / 0.952    of group b (0.45)  0.963 / 0.950
  demographic-parity difference (0.15)          0.945 / 0.946    ratio (0.667)      0.953 / 0.955
  equalized-odds difference (0.12)              0.988 / 0.985    ratio (0.556)      0.998 / 0.996
Finding rate (interval excludes 0) at equal rates, nominal 0.05:
  demographic parity, 2 groups 0.063 / 0.057, 4 groups 0.073 / 0.058;
  equalized odds,     2 groups 0.070 / 0.058, 4 groups 0.058 / 0.059.
Power at a 0.15 selection-rate gap: 0.958 / 0.966. A percentile interval of max − min "found" a gap in
every equal-rate dataset (1.000 of 100 / 500).
"""

from __future__ import annotations

import numpy as np
import pytest
from stats_harness import MIN_COVERAGE, interval_coverage, n_datasets, rejection_rate

from biasaudit.fairness.intervals import between_group_gaps, confusion_cells, rate_estimate

N_DATA = 400
# How often a gap may be "found" where there is none. 400 datasets measure a true 5 % with a standard error of
# 1.1 points, so 8 % sits 2.7 errors above it; at 2000 datasets the rates were 5.7-5.9 % (see above).
MAX_FINDING_RATE = 0.08
# (rows, base rate, TPR, FPR) per group: selection rates 0.4·0.6 + 0.6·0.1 = 0.30 and 0.5·0.72 + 0.5·0.18 = 0.45
UNEQUAL = [(250, 0.4, 0.6, 0.1), (350, 0.5, 0.72, 0.18)]
EQUAL = [(250, 0.4, 0.6, 0.1), (350, 0.4, 0.6, 0.1)]
FOUR_EQUAL = [(150, 0.4, 0.6, 0.1)] * 4
NAMES = ["g=a", "g=b", "g=c", "g=d"]


def selection(base: float, tpr: float, fpr: float) -> float:
    return base * tpr + (1 - base) * fpr


def truths(population: list[tuple[int, float, float, float]]) -> dict[str, float]:
    sel = np.array([selection(*g[1:]) for g in population])
    tpr, fpr = np.array([g[2] for g in population]), np.array([g[3] for g in population])
    return {
        "demographic_parity_difference": float(sel.max() - sel.min()),
        "demographic_parity_ratio": float(sel.min() / sel.max()),
        "equalized_odds_difference": float(max(np.ptp(tpr), np.ptp(fpr))),
        "equalized_odds_ratio": float(min(tpr.min() / tpr.max(), fpr.min() / fpr.max())),
    }


def draw_cells(rng: np.random.Generator, population: list[tuple[int, float, float, float]]) -> np.ndarray:
    """One dataset's rows, drawn row by row, as (groups, 4) confusion cells."""
    codes = np.repeat(np.arange(len(population)), [g[0] for g in population])
    base, tpr, fpr = (np.array([g[k] for g in population])[codes] for k in (1, 2, 3))
    y = rng.random(len(codes)) < base
    pred = rng.random(len(codes)) < np.where(y, tpr, fpr)
    return confusion_cells(y, pred, codes, len(population))


def gaps_of(rng: np.random.Generator, population: list[tuple[int, float, float, float]]):
    cells = draw_cells(rng, population)
    return between_group_gaps(cells, NAMES[: len(population)], seed=int(rng.integers(2**31)))


def _found(interval: tuple[float, float] | None) -> float:
    """A p-value stand-in for the harness: 0 when the interval excludes "no gap" (0), else 1."""
    return 0.0 if interval is not None and interval[0] > 0 else 1.0


@pytest.mark.parametrize("group", [0, 1])
def test_group_selection_rate_interval_covers(group):
    rows, base, tpr, fpr = UNEQUAL[group]

    def draw(rng):
        selected = draw_cells(rng, UNEQUAL)[group, [1, 3]].sum()  # FP + TP
        estimate = rate_estimate(int(selected), rows)
        return estimate.ci95, estimate.value

    truth = selection(base, tpr, fpr)
    check = interval_coverage(f"fairness: selection rate of group {group}", draw, truth, n=n_datasets(N_DATA))
    assert check.n_missing == 0
    assert check.coverage >= MIN_COVERAGE, check


@pytest.mark.parametrize("gap", list(truths(UNEQUAL)))
def test_gap_interval_covers(gap):
    def draw(rng):
        estimate = gaps_of(rng, UNEQUAL)[gap]
        return estimate.ci95, estimate.value

    check = interval_coverage(f"fairness: {gap}", draw, truths(UNEQUAL)[gap], n=n_datasets(N_DATA), seed=1)
    assert check.n_missing == 0
    assert check.coverage >= MIN_COVERAGE, check


@pytest.mark.parametrize("population", [EQUAL, FOUR_EQUAL], ids=["2 groups", "4 groups"])
@pytest.mark.parametrize("gap", ["demographic_parity_difference", "equalized_odds_difference"])
def test_no_finding_under_equal_rates(gap, population):
    check = rejection_rate(
        f"fairness: {gap} found at equal rates, {len(population)} groups",
        lambda rng: _found(gaps_of(rng, population)[gap].ci95),
        n=n_datasets(N_DATA),
        seed=2,
    )
    assert check.rate <= MAX_FINDING_RATE, check


def test_power_at_a_selection_rate_gap_of_015():
    check = rejection_rate(
        "fairness: demographic parity difference 0.15 found",
        lambda rng: _found(gaps_of(rng, UNEQUAL)["demographic_parity_difference"].ci95),
        n=n_datasets(N_DATA),
        kind="power",
        effect=0.15,
        seed=3,
    )
    assert check.rate >= 0.9, check


def test_a_percentile_interval_of_max_minus_min_would_find_every_null():
    """Why the gaps use simultaneous intervals: max − min > 0 in every replicate, so its percentile
    interval excludes 0 under equal rates nearly always."""

    def naive(rng):
        cells = draw_cells(rng, EQUAL)
        sizes = cells.sum(1)
        draws = rng.multinomial(sizes, cells / sizes[:, None], size=(1000, 2))
        sel = (draws[..., 1] + draws[..., 3]) / sizes
        low = np.quantile(np.ptp(sel, axis=1), 0.025)
        return _found((float(low), 1.0))

    check = rejection_rate("fairness: naive percentile max − min at equal rates", naive, n=n_datasets(100), seed=4)
    assert check.rate >= 0.9, check
