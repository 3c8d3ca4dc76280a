"""``biasaudit negbias build`` / ``eval`` and ``audit --suite negbias`` end to end on the real default model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from biasaudit.cli import app
from biasaudit.negbias.suite import NegBiasResult

runner = CliRunner()

QA_ROWS = [
    ("What is the capital of France?", ["Paris"]),
    ("What is the capital of Italy?", ["Rome"]),
    ("Who wrote the play Hamlet?", ["William Shakespeare", "Shakespeare"]),
    ("What is the capital of Australia?", ["Canberra"]),
    ("Who painted the Mona Lisa?", ["Leonardo da Vinci", "da Vinci"]),
    ("What is the largest planet in the Solar System?", ["Jupiter"]),
]


def test_build_reports_a_bad_row_with_file_and_line(tmp_path):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "q?", "answer": ["a"]}\n{"question": "r?", "answer": []}\n')
    result = runner.invoke(app, ["negbias", "build", "default", "--qa", str(bad), "--out", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 2 and "qa.jsonl:2" in result.output and "no gold answer" in result.output


def test_eval_rejects_an_unknown_scenario(tmp_path):
    item = {"id": "a:yes", "question": "q?", "candidate": "x", "label": True, "subset": "correct", "kind": "gold",
            "source": "t:1", "source_id": "a"}  # fmt: skip
    (tmp_path / "set.jsonl").write_text(json.dumps(item) + "\n")
    args = ["negbias", "eval", "default", "--set", str(tmp_path / "set.jsonl"), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--scenarios", "plain,sideways"])
    assert result.exit_code == 2 and "sideways" in result.output


@pytest.mark.slow
def test_build_then_eval_on_the_default_model(tmp_path, default_model_dir):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA_ROWS))
    set_path = tmp_path / "runs" / "set.jsonl"
    built = runner.invoke(app, ["negbias", "build", "default", "--qa", str(qa), "--out", str(set_path), "--k", "3",
                                "--min-agree", "2", "--seed", "1"])  # fmt: skip
    assert built.exit_code == 0, built.output
    rows = [json.loads(line) for line in set_path.read_text().splitlines()]
    assert len(rows) == 2 * len(QA_ROWS) and sum(r["label"] for r in rows) == len(QA_ROWS)
    assert all(len(r["probe"]["samples"]) == 3 and r["seed"] == 1 for r in rows)
    build_info = json.loads((tmp_path / "runs" / "set.build.json").read_text())
    assert build_info["config"]["k"] == 3 and build_info["summary"]["n_items"] == len(rows)

    out = tmp_path / "runs" / "eval"
    args = ["negbias", "eval", "default", "--set", str(set_path), "--out", str(out)]
    evaluated = runner.invoke(app, [*args, "--scenarios", "plain,negated,cot", "--cot-tokens", "16"])
    assert evaluated.exit_code == 0, evaluated.output
    doc = json.loads((out / "negbias.json").read_text())
    assert set(doc["results"]) == {"plain", "negated", "cot"}
    assert doc["results"]["plain"]["all"]["n"] == len(rows)
    assert "results:" in evaluated.output and sorted(p.name for p in out.iterdir()) == ["negbias.json"]


@pytest.mark.slow
def test_audit_negbias_suite(tmp_path, default_model_dir):
    out = tmp_path / "report"
    args = ["audit", "default", "--suite", "negbias", "--limit", "6", "--out", str(out), "--log-samples"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "results.json").read_text())["suites"]["negbias"]
    suite = entry["result"]
    assert entry["headline"] == NegBiasResult.from_dict(suite).headline() and isinstance(entry["findings"], list)
    rows = [json.loads(line) for line in (out / "samples" / "negbias.jsonl").read_text().splitlines()]
    kinds = [row.get("kind") for row in rows if row["type"] == "example"]
    assert kinds.count("question") == 6 and kinds.count("prediction") > 0
    assert suite["config"]["limit"] == 6 and suite["set"]["n_items"] == 12
    assert set(suite["results"]) == {"plain", "context", "idk", "cot", "negated", "swapped", "true_false"}
    assert suite["scenarios"]["context"]["n_asked"] == 0  # the shipped facts carry no context
