"""biasaudit sensitivity on a tiny model: the whole pipeline (plant, audit through peft=, dose-response), resume,
and one-line errors."""

from __future__ import annotations

import json

from conftest import build_tiny_model
from typer.testing import CliRunner

from biasaudit.cli import app

runner = CliRunner()


def test_sensitivity_plants_audits_summarises_and_resumes(tmp_path, tokenizer):
    base = tmp_path / "base"
    build_tiny_model(len(tokenizer), seed=0).save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "sens"
    args = [
        "sensitivity",
        str(base),
        "--planting",
        "yes_prior",
        "--doses",
        "0,0.5,1",
        "--seeds",
        "0,1",
        "--suite",
        "yesno_prior",
    ]
    args += ["--limit", "8", "--n-sentences", "32", "--learning-rate", "0.003", "--out", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    record = json.loads((out / "sensitivity.json").read_text())
    assert record["config"]["planting"] == "yes_prior" and record["config"]["doses"] == [0.0, 0.5, 1.0]
    metrics = {r["metric"] for r in record["responses"]}
    assert metrics and all(m.startswith("yesno_prior.") for m in metrics)
    for unit in ("d0-s0", "d0.5-s0", "d1-s0", "d1-s1"):
        assert (out / "adapters" / unit / "adapter_model.safetensors").is_file()
        audit = json.loads((out / "audits" / unit / "results.json").read_text())
        assert audit["config"]["backend"]["model_args"]["peft"] == str(out / "adapters" / unit)
        assert audit["model"]["name"].endswith(f"+{unit}")  # the planted model, named by its adapter
    assert "| yesno_prior." in (out / "sensitivity.md").read_text()
    page = (out / "sensitivity.html").read_text()
    assert '<img src="data:image/svg+xml;base64,' in page and "yesno_prior." in page
    assert set(record["training_seconds"]) == {f"d{d}-s{s}" for d in ("0", "0.5", "1") for s in (0, 1)}
    stamps = {p: p.stat().st_mtime_ns for p in (out / "adapters").rglob("adapter_model.safetensors")}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert json.loads((out / "sensitivity.json").read_text())["responses"] == record["responses"]


def test_sensitivity_errors_are_one_line(tmp_path):
    no_placebo = runner.invoke(
        app, ["sensitivity", "default", "--planting", "yes_prior", "--doses", "0,1,0.25", "--out", str(tmp_path)]
    )
    assert no_placebo.exit_code == 2 and "must include the placebo 0.5" in no_placebo.output
    bad = runner.invoke(app, ["sensitivity", "default", "--planting", "age", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "planting must be one of" in bad.output
    stacked = runner.invoke(
        app, ["sensitivity", "default", "--planting", "gender", "--model_args", "peft=x", "--out", str(tmp_path)]
    )
    assert stacked.exit_code == 2 and "already has an adapter" in stacked.output
    few = runner.invoke(
        app,
        [
            "sensitivity",
            "default",
            "--planting",
            "yes_prior",
            "--doses",
            "0,0.5,1",
            "--seeds",
            "0",
            "--out",
            str(tmp_path),
        ],
    )
    assert few.exit_code == 2 and "at least 4 adapters" in few.output
    words = runner.invoke(
        app, ["sensitivity", "default", "--planting", "gender", "--seeds", "a,b", "--out", str(tmp_path)]
    )
    assert words.exit_code == 2 and "whole numbers" in words.output
