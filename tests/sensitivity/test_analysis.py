"""Dose-response statistics: known answers, and the intervals and p-value checked by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from biasaudit.errors import InvalidRequestError
from biasaudit.sensitivity.analysis import DosePoint, dose_response, slope_interval

DOSES = np.repeat([0.0, 0.25, 0.5, 0.75, 1.0], 2)  # the benchmark's design: 5 doses x 2 seeds


def points(values, half_width=0.05):
    return [
        DosePoint(float(d), i % 2, float(v), (float(v) - half_width, float(v) + half_width))
        for i, (d, v) in enumerate(zip(DOSES, values, strict=True))
    ]


def test_a_monotone_response_is_found_and_summarised():
    result = dose_response("m", points(0.2 + 0.4 * DOSES))
    assert result.spearman == pytest.approx(1.0) and result.tracks_dose
    assert result.slope == pytest.approx(0.4) and result.slope_ci[0] == pytest.approx(0.4)
    # Placebo envelope [0.35, 0.45]: d = 0.75 (0.5) is out, so the smallest detectable distance is 0.25.
    assert result.minimum_detectable == 0.25
    assert result.signal_to_noise == pytest.approx(0.4 / 0.05)
    assert result.by_dose["0.5"]["mean"] == pytest.approx(0.4)
    assert result.spearman_p < 0.01


def test_an_unsigned_effect_rises_on_both_sides_of_the_placebo():
    # A distance from uniform: as large at d = 0 as at d = 1. Flat against d, monotone against |d - 0.5|.
    result = dose_response("m", points(0.1 + np.abs(DOSES - 0.5)))
    assert result.spearman == pytest.approx(0.0) and not result.tracks_dose
    assert result.strength_spearman == pytest.approx(1.0) and result.tracks_strength and result.moves
    assert result.minimum_detectable == 0.25


def test_a_flat_response_is_a_finding_not_an_error():
    result = dose_response("flat", points(np.full(10, 0.3)))
    assert result.spearman == 0.0 and not result.tracks_dose and result.spearman_p == 1.0 and not result.moves
    assert result.minimum_detectable is None and result.slope == pytest.approx(0.0)


def test_small_moves_inside_the_placebo_envelope_are_not_detectable():
    values = 0.3 + 0.02 * DOSES  # moves 0.02 over the whole range; CIs are 0.1 wide
    assert dose_response("m", points(values)).minimum_detectable is None


def test_bad_designs_are_refused():
    with pytest.raises(InvalidRequestError, match="at least 3 distinct doses"):
        dose_response("m", [DosePoint(0.5, 0, 0.1, (0, 0.2)), DosePoint(1.0, 0, 0.1, (0, 0.2))] * 2)
    without_placebo = [DosePoint(d, 0, d, (d - 0.1, d + 0.1)) for d in (0.0, 0.25, 0.75, 1.0)]
    with pytest.raises(InvalidRequestError, match=r"placebo dose 0\.5 is missing"):
        dose_response("m", without_placebo)
    with pytest.raises(InvalidRequestError, match="finite"):
        dose_response("m", points([math.nan, *range(9)]))


def test_slope_interval_covers_the_true_slope():
    rng = np.random.default_rng(0)
    reps = 1000
    hits = sum(
        low <= 0.3 <= high
        for low, high in (
            slope_interval(DOSES, 0.1 + 0.3 * DOSES + rng.normal(0, 0.1, DOSES.size))[1] for _ in range(reps)
        )
    )
    assert abs(hits / reps - 0.95) < 0.025, hits / reps


def test_the_p_value_has_its_size_on_the_benchmark_design():
    # Tied doses (two seeds each) and no dose effect: P(p < alpha) must be alpha within Monte-Carlo error.
    rng = np.random.default_rng(3)
    read = [dose_response("m", points(rng.normal(size=DOSES.size))) for _ in range(600)]
    for p in (np.array([r.spearman_p for r in read]), np.array([r.strength_spearman_p for r in read])):
        assert abs(np.mean(p < 0.05) - 0.05) < 0.025 and abs(np.mean(p < 0.10) - 0.10) < 0.035


def test_below_ten_adapters_there_is_no_rho_interval_and_p_decides():
    three = np.repeat([0.0, 0.5, 1.0], 2)
    rising = [DosePoint(float(d), i % 2, float(d + 0.01 * i), (d - 0.1, d + 0.1)) for i, d in enumerate(three)]
    result = dose_response("m", rising)
    expected = stats.spearmanr([p.dose for p in rising], [p.estimate for p in rising]).statistic
    assert result.spearman_ci is None and result.spearman == pytest.approx(expected)  # < 1: tied doses
    assert result.spearman_p == pytest.approx(2 * 2 * 2 * 2 / math.factorial(6))  # seeds swap within a dose
    assert result.tracks_dose
