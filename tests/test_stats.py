from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats as sps

from biasaudit.stats import bootstrap_ci, effective_sample_size, paired_difference_interval, wilson_interval


def test_constant_values_give_a_point_interval():
    assert bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's DegenerateDataWarning is handled, not passed on
        assert bootstrap_ci(np.ones((12, 2)), lambda r: r[:, 0].mean() - r[:, 1].mean()) == (0.0, 0.0)


def test_interval_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(size=200)
    low, high = bootstrap_ci(values, seed=5)
    assert (low, high) == bootstrap_ci(values, seed=5)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(200), rel=0.25)


def test_bca_is_scipys_bootstrap_over_whole_rows():
    rows = np.random.default_rng(2).normal(size=(40, 2)) + np.array([0.0, 0.5])

    def diff(r):
        return r[:, 0].mean() - r[:, 1].mean()

    expected = sps.bootstrap(
        (np.arange(40),), lambda i: diff(rows[i]), n_resamples=500, rng=np.random.default_rng(3), vectorized=False
    ).confidence_interval
    assert bootstrap_ci(rows, diff, n_resamples=500, seed=3) == pytest.approx(tuple(expected))
    # a vectorized statistic (a stack of resamples, rows on the second-to-last axis) gives the same interval
    fast = bootstrap_ci(
        rows, lambda r: r[..., 0].mean(-1) - r[..., 1].mean(-1), n_resamples=500, seed=3, vectorized=True
    )
    assert fast == pytest.approx(tuple(expected))
    percentile = bootstrap_ci(rows, diff, n_resamples=500, seed=3, method="percentile")
    assert percentile != pytest.approx(tuple(expected))


def test_cluster_bootstrap_resamples_whole_clusters():
    # every cluster holds two identical rows: resampling clusters sees 10 values, resampling rows 20
    values = np.repeat(np.random.default_rng(4).normal(size=10), 2)
    clusters = np.repeat(np.arange(10), 2)
    by_cluster = bootstrap_ci(values, clusters=clusters, seed=1)
    assert by_cluster == pytest.approx(bootstrap_ci(values[::2], seed=1))
    low, high = bootstrap_ci(values, seed=1)
    assert by_cluster[1] - by_cluster[0] > 1.2 * (high - low)
    with pytest.raises(ValueError, match="at least 2 clusters"):
        bootstrap_ci(values, clusters=np.zeros(20))


def test_statistic_undefined_in_some_resamples_gives_nan_not_the_lucky_resamples():
    hits = np.array([1.0] + [0.0] * 9)
    low, high = bootstrap_ci(hits, lambda v: v.sum() / v.sum())  # 0/0 whenever the single 1 is left out
    assert np.isnan(low) and np.isnan(high)


def test_too_few_values_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci(np.array([1.0]))


@pytest.mark.parametrize(("k", "n"), [(0, 36), (2, 4), (15, 20), (36, 36), (117, 200)])
def test_wilson_equals_scipys_wilson(k, n):
    ci = sps.binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high))


def test_wilson_known_answers_and_errors():
    assert wilson_interval(0, 36)[1] == pytest.approx(3.8415 / (36 + 3.8415), abs=1e-4)  # z^2 / (n + z^2)
    assert wilson_interval(36, 36) == pytest.approx((36 / 39.8415, 1.0), abs=1e-4)
    low, high = wilson_interval(7.5, 15.0)  # effective counts need not be whole
    assert low == pytest.approx(1 - high) and wilson_interval(7, 15)[0] < low < wilson_interval(8, 15)[0]
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=95)


def test_newcombe_paired_interval_known_answer():
    # Cavo et al. 2012 in Fagerland, Lydersen & Laake (2017), Table 8.x: estimate -0.0621, 95% CI -0.1186 to -0.0046
    assert paired_difference_interval(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    # no discordant pair: the interval still has width (a bootstrap would say [0, 0])
    low, high = paired_difference_interval(30, 0, 0, 10)
    assert low < 0 < high and high - low > 0.1
    # three exclusive outcomes of one unit (BBQ s_AMB): both = 0; symmetric counts give a symmetric interval
    low, high = paired_difference_interval(0, 10, 10, 20)
    assert low == pytest.approx(-high)
    with pytest.raises(ValueError, match="non-negative"):
        paired_difference_interval(1, -1, 0, 0)


def test_effective_sample_size_is_n_over_the_design_effect_with_few_clusters_penalised():
    values = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0], dtype=float)
    assert effective_sample_size(values) == 12.0
    # clusters {0,1,2,3} all 1, {4..7} all 0, {8..11} mixed: by hand
    clusters = np.repeat([0, 1, 2], 4)  # the mean is 0.5
    totals = np.array([4 * 0.5, -4 * 0.5, 0.0])
    design = 3 / 2 * (totals @ totals) / 144
    iid = values.var(ddof=1) / 12
    df = (sps.t.ppf(0.975, 11) / sps.t.ppf(0.975, 2)) ** 2
    assert effective_sample_size(values, clusters) == pytest.approx(12 * iid / design * df)
    # independent-looking clusters never count as more than n, and singletons are plain n
    alternating = np.tile([1.0, 0.0], 6)
    assert effective_sample_size(alternating, np.repeat(np.arange(6), 2)) == pytest.approx(
        12 * (sps.t.ppf(0.975, 11) / sps.t.ppf(0.975, 5)) ** 2
    )
    assert effective_sample_size(values, np.arange(12)) == 12.0
    with pytest.raises(ValueError, match="at least 2 clusters"):
        effective_sample_size(values, np.zeros(12))


def test_effective_sample_size_with_weights_is_capped_at_kish():
    values = np.array([1.0, 1.0, 1.0, 1.0])
    weights = np.array([1.0, 1.0, 1.0, 3.0])
    assert effective_sample_size(values, weights=weights) == pytest.approx(36 / 12)  # (sum w)^2 / sum w^2
    with pytest.raises(ValueError, match="weights"):
        effective_sample_size(values, weights=np.array([1.0, -1.0, 1.0, 1.0]))


def test_json_is_written_atomically_and_readable(tmp_path):
    import os

    from biasaudit.jsonio import read_json, write_json_atomic

    path = tmp_path / "sub" / "r.json"
    write_json_atomic(path, {"a": [1, 2]})
    assert read_json(path) == {"a": [1, 2]}
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left
    path.write_text("{broken")
    assert read_json(path) is None
