"""``biasaudit audit --suite biaslens`` (with an SAE) and the traditional-metric suites, end to end on
the real default model."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA, save_split_sign_sae
from typer.testing import CliRunner

from biasaudit.audit import SUITES
from biasaudit.cli import app
from biasaudit.suite import excludes

runner = CliRunner()


@pytest.mark.slow
def test_audit_biaslens_suite_in_both_spaces(tmp_path, default_model_dir):
    sae = save_split_sign_sae(tmp_path / "sae", d_in=576, layer=12)  # the default model's width
    out = tmp_path / "report"
    args = ["audit", "default", "--suite", "biaslens", "--limit", "12", "--out", str(out), "--sae", str(sae)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    lens = doc["suites"]["biaslens"]["result"]
    assert lens["config"]["n_examples"] == 12 and lens["config"]["sae"] == str(sae)
    assert {c["category"] for c in lens["categories"]} >= {"gender", "religion", "age", "disability"}
    assert 12 in lens["layers"]
    for category in lens["categories"]:
        assert category["sae"]["space"] == "sae"
        if category["score"] is None:
            assert category["note"]
    probe = lens["probes"][0]
    assert probe["space"] == "residual" and probe["sae"]["space"] == "sae"
    assert [x["layer"] for x in probe["sae"]["layers"]] == [12]
    assert set(lens["sae_concepts"]) and "biaslens" in result.output


@pytest.mark.slow
def test_audit_traditional_metric_suites(tmp_path, default_model_dir):
    if not (SHARED_DATA / "crows_pairs").is_dir():
        pytest.skip(f"needs the public datasets in {SHARED_DATA} (CI has them; a user checkout does not)")
    out = tmp_path / "report"
    args = ["audit", "default", "--suite", "crows_pairs,bbq,stereoset", "--limit", "24", "--out", str(out)]
    result = runner.invoke(app, [*args, "--data-dir", str(SHARED_DATA), "--log-samples"])
    assert result.exit_code == 0, result.output
    suites = json.loads((out / "results.json").read_text())["suites"]
    assert set(suites) == {"crows_pairs", "bbq", "stereoset"}
    assert suites["crows_pairs"]["result"]["overall"]["n_pairs"] == 24
    assert "by_category" in suites["bbq"]["result"] and "by_bias_type" in suites["stereoset"]["result"]
    for name, entry in suites.items():
        assert SUITES[name].load(entry["result"]).to_dict() == entry["result"]
        assert entry["headline"] == SUITES[name].load(entry["result"]).headline() != ""
        for finding in entry["findings"]:
            assert excludes(finding["ci95"], finding["null"]) and finding["reading"].endswith(".")
    rows = [json.loads(line) for line in (out / "samples" / "crows_pairs.jsonl").read_text().splitlines()]
    items = [row for row in rows if row["type"] == "example"]
    assert len(items) == 24 and {"kind", "pair_id", "logprob_more", "logprob_less"} <= set(items[0])
