"""CI gates: parsed and checked before a run, evaluated on the run's tidy frame, exit 3 when one fails."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from biasaudit.audit import SUITES
from biasaudit.cli import app
from biasaudit.errors import ConfigError
from biasaudit.report import load_run
from biasaudit.report.gates import Gate, evaluate_gates

runner = CliRunner()


def test_parse_and_check():
    gate = Gate.parse(" negbias.pr_gap[plain/insufficient] >= 0.1 ")
    assert gate == Gate("negbias", "pr_gap", "plain/insufficient", ">=", 0.1)
    assert Gate.parse("crows_pairs.pct_stereotype>60").group == "overall"
    assert Gate.parse("bbq.bias_ambig < -1e-1").threshold == -0.1
    for bad in ("crows_pairs > 60", "crows_pairs.pct_stereotype >> 60", "crows_pairs.pct_stereotype > x", ""):
        with pytest.raises(ConfigError, match=r"expected SUITE\.METRIC"):
            Gate.parse(bad)
    suites = [SUITES["crows_pairs"], SUITES["negbias"]]
    gate.check(suites)
    with pytest.raises(ConfigError, match="has no metric 'pct'"):
        Gate.parse("crows_pairs.pct > 60").check(suites)
    with pytest.raises(ConfigError, match="suite 'icl' is not in this run"):
        Gate.parse("icl.vanilla > 0.1").check(suites)


def test_evaluate_known_answers():
    frame = pd.DataFrame(
        [
            {"suite": "crows_pairs", "metric": "pct_stereotype", "group": "overall", "value": 61.0},
            {"suite": "crows_pairs", "metric": "pct_stereotype", "group": "by_bias_type/gender", "value": 55.0},
        ]
    )
    gates = [
        Gate.parse(t)
        for t in ("crows_pairs.pct_stereotype > 60", "crows_pairs.pct_stereotype[by_bias_type/gender] > 60")
    ]
    gates.append(Gate.parse("crows_pairs.pct_stereotype[by_bias_type/age] > 60"))
    outcomes = evaluate_gates(gates, frame)
    assert [(o.value, o.failed) for o in outcomes] == [(61.0, True), (55.0, False), (None, True)]
    assert "not measured" in outcomes[2].reason and "by_bias_type/gender" in outcomes[2].reason


def test_gates_on_a_saved_run(run_dir):
    value = load_run(run_dir).frame().query("suite == 'yesno_prior' and metric == 'p_yes'").value.item()
    above = runner.invoke(app, ["report", str(run_dir), "--fail-on", f"yesno_prior.p_yes > {value - 0.01}"])
    assert above.exit_code == 3 and "FAILED" in above.output
    below = runner.invoke(app, ["report", str(run_dir), "--fail-on", f"yesno_prior.p_yes > {value + 0.01}"])
    assert below.exit_code == 0, below.output
    typo = runner.invoke(app, ["report", str(run_dir), "--fail-on", "yesno_prior.p_no > 0.5"])
    assert typo.exit_code == 2 and "has no metric 'p_no'" in typo.output


def test_a_gate_typo_fails_before_the_model_loads(tmp_path):
    args = ["audit", "does-not-exist", "--suite", "yesno_prior", "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--fail-on", "yesno_prior.p_no > 0.5"])
    assert result.exit_code == 2 and "has no metric 'p_no'" in result.output
    assert not (tmp_path / "o").exists()


def test_declared_metrics_cover_the_frame(run_dir):
    frame = load_run(run_dir).frame()
    for suite, rows in frame.groupby("suite"):
        assert set(rows.metric) <= set(SUITES[suite].result_type.metrics), suite
    doc = json.loads((run_dir / "results.json").read_text())
    assert set(frame.suite) == {name for name, e in doc["suites"].items() if "skipped" not in e["result"]}
