"""The documented examples run as written, and the calibration CLI paths work end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biasaudit.calibration import DomainContextCalibrator, PriorCalibrator
from biasaudit.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "calibration.md"
UNLABELED = ["a slow and pointless film", "the actors look bored", "what a delight", "sharp, witty dialogue"]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.mark.slow
def test_embedding_example_runs_as_documented(tmp_path, monkeypatch, default_model_dir):
    monkeypatch.chdir(tmp_path)
    example = python_blocks()[0]
    assert len(example.strip().splitlines()) <= 10
    namespace: dict = {"unlabeled_reviews": UNLABELED}
    exec(compile(example, str(DOC), "exec"), namespace)
    clf = namespace["clf"]
    assert isinstance(clf.calibrator_, DomainContextCalibrator)
    assert set(clf.predict(["an instant classic", "I walked out after an hour"])) <= {"negative", "positive"}
    saved = PriorCalibrator.load(tmp_path / "sst2-prior.json", prompt=clf.prompt_, model="SmolLM2-135M-Instruct")
    np.testing.assert_allclose(saved.prior_, clf.calibrator_.prior_)


@pytest.mark.slow
def test_calibrate_cli_writes_a_prior_the_python_api_loads(tmp_path, monkeypatch, default_model_dir):
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "fewshot_cls").is_dir():
        pytest.skip(f"{SHARED_DATA}/fewshot_cls not found: the shared datasets live beside the repo in CI only")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["calibrate", "default", "--task", "sst2", "--method", "cc", "--shots", "2", "--out", "prior.json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "prior.json").read_text())
    assert data["method"] == "cc" and data["labels"] == [" negative", " positive"]
    assert sum(data["prior"]) == pytest.approx(1.0)
    from biasaudit.backend.hf import HFBackend

    namespace = {"backend": HFBackend.from_spec("default", progress=False)}
    exec(compile(python_blocks()[1], str(DOC), "exec"), namespace)
    probs = namespace["probs"]
    assert probs.shape == (1, 2) and probs.sum() == pytest.approx(1.0)
    bad = CliRunner().invoke(app, ["calibrate", "default", "--task", "sst2", "--method", "xx", "--out", "p.json"])
    assert bad.exit_code == 2 and "unknown method" in bad.output


@pytest.mark.slow
def test_audit_icl_suite_end_to_end(tmp_path, monkeypatch, default_model_dir):
    from conftest import SHARED_DATA

    from biasaudit.calibration import evaluate

    if not (SHARED_DATA / "fewshot_cls").is_dir():
        pytest.skip(f"{SHARED_DATA}/fewshot_cls not found: the shared datasets live beside the repo in CI only")
    monkeypatch.setattr(evaluate, "TASKS", ("sst2", "rte"))  # one single-text and one two-slot task keep CI short
    out = tmp_path / "audit"
    args = ["audit", "default", "--suite", "icl", "--limit", "4", "--out", str(out), "--data-dir", str(SHARED_DATA)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    icl = json.loads((out / "results.json").read_text())["suites"]["icl"]["result"]
    assert set(icl["tasks"]) == {"sst2", "rte"}
    sst2 = icl["tasks"]["sst2"]
    assert sst2["n_test"] == 4 and set(sst2["summary"]["8"]) == {"none", "cc", "dc", "bc"}
    for measure in ("vanilla", "context", "domain", "predicted_label_skew", "recall_spread"):
        assert measure in sst2["bias"]
    gain = icl["macro_f1_gain_vs_none"]["sst2"]["dc"]
    row = sst2["summary"]["8"]
    assert gain == pytest.approx(row["dc"]["macro_f1_mean"] - row["none"]["macro_f1_mean"])


def test_icl_suite_without_data_says_skipped_and_how_to_get_it(tmp_path, monkeypatch, tiny_backend):
    from biasaudit import data_sources
    from biasaudit.audit import SUITES, RunConfig
    from biasaudit.backend.spec import BackendSpec

    def missing():
        raise data_sources.DatasetNotFoundError("no data folder found; pass --data-dir")

    monkeypatch.setattr(data_sources, "default_data_dir", missing)
    result = SUITES["icl"].run(tiny_backend, RunConfig(backend=BackendSpec(model="tiny")))
    reason = result.to_dict()["skipped"]
    assert reason.startswith("sst2: neither its files") and "the hub is unreachable" in reason
    assert "biasaudit data fetch icl --to DIR, then pass --data-dir DIR" in reason
    assert result.headline() == f"skipped: {reason}"
