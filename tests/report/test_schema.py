"""results.json has a JSON Schema (docs/results.schema.json), generated from the code, and real runs match it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from biasaudit.report.schema import results_schema, validate_results

DOCS_SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "results.schema.json"


def test_the_documented_schema_is_the_generated_one():
    assert json.loads(DOCS_SCHEMA.read_text()) == results_schema(), (
        "docs/results.schema.json is stale: python -m biasaudit.report.schema > docs/results.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(results_schema())


def test_text_suites_match_and_drift_is_caught(run_dir):
    document = json.loads((run_dir / "results.json").read_text())
    validate_results(document)
    for breaks in (
        lambda d: d["suites"]["yesno_prior"].pop("headline"),
        lambda d: d["suites"]["yesno_prior"]["result"].update(renamed=1),
        lambda d: d["suites"]["negbias"]["result"].pop("results"),
        lambda d: d["suites"]["yesno_prior"]["findings"].append({"suite": "x"}),
        lambda d: d.update(schema_version=0),
    ):
        broken = copy.deepcopy(document)
        breaks(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate_results(broken)


def test_a_vision_language_run_matches(tmp_path, tiny_vlm_dirs):
    from biasaudit.audit import RunConfig, run_audit
    from biasaudit.backend.spec import BackendSpec
    from biasaudit.backend.vlm import VLMBackend

    backend = VLMBackend.from_spec(str(tiny_vlm_dirs["llava"]), progress=False)
    config = RunConfig(backend=BackendSpec(model=str(tiny_vlm_dirs["llava"]), backend="vlm"), limit=6)
    path = run_audit(config, tmp_path, backend=backend)
    validate_results(json.loads(path.read_text()))
