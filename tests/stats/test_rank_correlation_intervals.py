"""Spearman's rho as the BiasLens validation reports it: exact permutation p at any n, a CI from 10 pairs.

Data: bivariate normal pairs with correlation r, whose population Spearman rho is (6/pi) asin(r/2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from stats_harness import MAX_SIZE, MIN_COVERAGE, interval_coverage, n_datasets, rejection_rate

from biasaudit.stats import MIN_PAIRS_FOR_RHO_CI, rank_correlation, rho_interval


def pairs(rng: np.random.Generator, n: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, r], [r, 1.0]], size=n)
    return z[:, 0], z[:, 1]


def population_rho(r: float) -> float:
    return 6.0 / math.pi * math.asin(r / 2.0)


@pytest.mark.parametrize("n", [5, 8])
def test_permutation_p_has_its_size_with_few_categories(n):
    check = rejection_rate(
        f"Spearman rho permutation p, n={n}",
        lambda rng: rank_correlation(*pairs(rng, n, 0.0))["p_value"],
        n=n_datasets(120),
    )
    assert check.rate <= MAX_SIZE, check


def test_permutation_p_power_with_eight_categories():
    check = rejection_rate(
        "Spearman rho permutation p, n=8",
        lambda rng: rank_correlation(*pairs(rng, 8, 0.9))["p_value"],
        n=n_datasets(60),
        kind="power",
        effect=population_rho(0.9),
    )
    assert check.rate >= 0.6, check


@pytest.mark.parametrize("r", [0.0, 0.6, 0.9])
def test_rho_interval_covers_from_ten_pairs(r):
    n = MIN_PAIRS_FOR_RHO_CI

    def one(rng):
        rho = float(spearmanr(*pairs(rng, n, r)).statistic)
        return rho_interval(rho, n), rho

    check = interval_coverage(f"Spearman rho CI, n={n}, r={r}", one, population_rho(r), n=n_datasets(400))
    assert check.coverage >= MIN_COVERAGE, check


def test_known_answers_and_no_interval_below_ten_pairs():
    x = np.arange(6.0)
    out = rank_correlation(x, x)
    assert out["rho"] == pytest.approx(1.0) and out["ci_low"] is None
    assert rho_interval(0.5, MIN_PAIRS_FOR_RHO_CI - 1) is None
    assert out["p_value"] == pytest.approx(2 / math.factorial(6))  # only the identity and its reverse
    with pytest.raises(ValueError, match="at least 3"):
        rank_correlation(x[:2], x[:2])
