"""Shared pieces of the benchmarks: estimates, stratified subsets, sources, and the suite entry point."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
from conftest import SHARED_DATA
from loglikelihood_fakes import FakeBackend

from biasaudit.datasets import is_hub_id, read_table
from biasaudit.errors import DatasetFormatError, InvalidRequestError
from biasaudit.metrics import BENCHMARKS, run_benchmark
from biasaudit.metrics.common import group_indices, percent, stratified_sample
from biasaudit.stats import (
    MIN_CI_ITEMS,
    Estimate,
    bootstrap_ci,
    effective_sample_size,
    estimate,
    paired_difference,
    proportion,
    wilson_interval,
)


def test_estimate_uses_the_shared_bootstrap_and_refuses_tiny_groups():
    hits = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0])
    est = estimate(hits, percent, n_bootstrap=200, seed=5)
    assert est.value == pytest.approx(100 * 8 / 12) and est.n == 12 and est.note is None
    assert est.ci95 == pytest.approx(bootstrap_ci(hits, percent, n_resamples=200, seed=5))
    small = estimate(hits[: MIN_CI_ITEMS - 1], percent)
    assert small.value is not None and small.ci95 is None and "too few" in small.note
    assert estimate(np.array([]), percent).to_dict() == {"value": None, "ci95": None, "n": 0, "note": "no items"}


def test_proportion_is_a_wilson_interval_and_survives_the_boundary():
    hits = np.array([True] * 15 + [False] * 5)
    est = proportion(hits)
    assert est.value == 75.0 and est.n == 20 and est.note is None
    assert est.ci95 == pytest.approx((53.1299, 88.8138), abs=1e-3)  # Wilson, 15 of 20
    assert proportion(np.ones(36, dtype=bool)).ci95 == pytest.approx((90.36, 100.0), abs=0.01)
    assert proportion(hits, scale=1.0).ci95 == pytest.approx((0.531299, 0.888138), abs=1e-5)
    assert proportion(hits[:9]).ci95 is None and proportion(hits[:9]).note == (
        "only 9 items: too few for a 95% interval (need 10)"
    )
    assert proportion(np.array([], dtype=bool)).to_dict() == {"value": None, "ci95": None, "n": 0, "note": "no items"}


def test_proportion_with_clusters_uses_the_effective_sample_size():
    # four templates answered all-or-nothing: 20 questions carry the information of about 4
    hits = np.repeat([True, True, True, False], 5)
    clusters = np.repeat(np.arange(4), 5)
    est = proportion(hits, clusters=clusters, unit="questions")
    n_eff = effective_sample_size(hits, clusters)
    assert n_eff < 5
    low, high = wilson_interval(0.75 * n_eff, n_eff)
    assert est.ci95 == pytest.approx((100 * low, 100 * high))
    assert est.ci95[1] - est.ci95[0] > 1.5 * np.subtract(*proportion(hits).ci95[::-1])
    one = proportion(hits, clusters=np.zeros(20), unit="questions")
    assert one.ci95 is None and one.note == "all questions come from one template: no interval for other templates"


def test_paired_difference_is_newcombes_interval():
    # Cavo et al. 2012 (Fagerland et al. 2017): 59 both, 6 first only, 16 second only, 80 neither
    first = np.array([1] * 59 + [1] * 6 + [0] * 16 + [0] * 80, dtype=bool)
    second = np.array([1] * 59 + [0] * 6 + [1] * 16 + [0] * 80, dtype=bool)
    est = paired_difference(first, second, scale=1.0)
    assert est.value == pytest.approx(-10 / 161) and est.n == 161
    assert est.ci95 == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    with pytest.raises(ValueError, match="two \\(n,\\) arrays"):
        paired_difference(first, second[:-1])


def test_scaled_estimate_maps_value_and_interval():
    est = Estimate(0.6, (0.5, 0.7), 30).scaled(2.0, -1.0)
    assert est.value == pytest.approx(0.2) and est.ci95 == pytest.approx((0.0, 0.4)) and est.n == 30
    assert Estimate(None, None, 0, "no items").scaled(2.0, -1.0) == Estimate(None, None, 0, "no items")
    with pytest.raises(ValueError, match="positive"):
        est.scaled(-1.0)


def test_group_indices_sorted_keys_ascending_positions():
    assert {k: v.tolist() for k, v in group_indices(["b", "a", "b", "c", "a"]).items()} == {
        "a": [1, 4],
        "b": [0, 2],
        "c": [3],
    }


def test_stratified_sample_is_proportional_seeded_and_ordered():
    keys = ["big"] * 60 + ["mid"] * 30 + ["tiny"] * 2
    chosen = stratified_sample(keys, 10, seed=0)
    assert chosen == sorted(chosen) and len(set(chosen)) == 10
    assert Counter(keys[i] for i in chosen) == {"big": 6, "mid": 3, "tiny": 1}  # every category kept
    assert stratified_sample(keys, 10, seed=0) == chosen
    assert stratified_sample(keys, 10, seed=1) != chosen
    assert stratified_sample(keys, None, seed=0) == list(range(92))
    assert stratified_sample(keys, 500, seed=0) == list(range(92))
    assert len(stratified_sample(keys, 2, seed=0)) == 2  # fewer than categories: largest shares win
    with pytest.raises(InvalidRequestError):
        stratified_sample(keys, 0, seed=0)


def test_read_table_reports_the_first_line_of_a_multiline_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"two\nlines"\n3\n')
    with pytest.raises(DatasetFormatError, match=re.escape(f"{path}:4: expected 2 columns, got 1")):
        list(read_table(path, ["a", "b"]))
    path.write_text("")
    with pytest.raises(DatasetFormatError, match=re.escape(f"{path}:1: the file is empty")):
        list(read_table(path, ["a"]))


def test_hub_ids_and_paths_are_told_apart(tmp_path):
    assert is_hub_id("nyu-mll/crows_pairs") and is_hub_id("owner/name:config")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./rel/path") and not is_hub_id("a/b/c")


def test_run_benchmark_is_json_ready_and_skips_without_data(tmp_path):
    backend = FakeBackend(lambda c, x: -float(len(x)))
    for name in BENCHMARKS:
        assert set(run_benchmark(name, backend, source=tmp_path)) == {"skipped"}
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_benchmark("winogrande", backend)
    if not (SHARED_DATA / "crows_pairs").is_dir():
        pytest.skip("shared data not here")
    for name in BENCHMARKS:
        doc = run_benchmark(name, backend, limit=12, seed=1, source=SHARED_DATA, apply_chat_template=True)
        json.dumps(doc, allow_nan=False)
        assert doc["benchmark"] == name and doc["params"]["limit"] == 12 and doc["params"]["seed"] == 1
        assert ("note" in doc) == (name in ("crows_pairs", "stereoset"))
    # the chat template reaches the question-style benchmarks only (BENCHMARKS order)
    assert [call["chat"] for call in backend.calls] == [False, True, False, True, True]
