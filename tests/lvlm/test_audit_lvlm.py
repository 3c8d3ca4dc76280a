"""``biasaudit audit`` on a vision-language model: it is detected from its config and runs the ``lvlm`` suite
through the runner (config, resume, results.json, --log-samples)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from biasaudit.cli import app
from biasaudit.lvlm.suite import LVLMResult

runner = CliRunner()


def test_audit_runs_the_lvlm_suite_on_a_vision_language_model(tmp_path, tiny_vlm_dirs):
    out = tmp_path / "report"
    args = ["audit", str(tiny_vlm_dirs["llava"]), "--limit", "6", "--out", str(out), "--log-samples"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["suites"]) == ["lvlm"] and doc["config"]["backend"]["backend"] == "vlm"
    entry = doc["suites"]["lvlm"]
    result = LVLMResult.from_dict(entry["result"])
    assert result.n_items == 6 and result.probe == "pope" and entry["headline"] == result.headline()
    rows = [json.loads(line) for line in (out / "samples" / "lvlm.jsonl").read_text().splitlines()]
    assert [row["type"] for row in rows] == ["example"] * 6  # image requests are not in the request store
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "reusing" in again.output
    assert json.loads((out / "results.json").read_text())["suites"] == doc["suites"]


def test_a_text_suite_on_a_vision_language_model_is_a_clear_error(tmp_path, tiny_vlm_dirs):
    result = runner.invoke(app, ["audit", str(tiny_vlm_dirs["llava"]), "--suite", "icl", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "measure text models" in result.output and "lvlm" in result.output
    assert not (tmp_path / "o").exists()
