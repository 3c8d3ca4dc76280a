"""The audit runner: config round-trip, resumable suites, clear errors before any model loads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from biasaudit.audit import SUITES, RunConfig, run_audit
from biasaudit.backend.spec import BackendSpec
from biasaudit.errors import ConfigError, InvalidRequestError
from biasaudit.suite import Suite, SuiteResult, resolve_suites


def _config(model: str = "m", *, model_args=None, device=None, batch_size="auto", **kwargs) -> RunConfig:
    spec = BackendSpec(model=model, model_args=model_args or {}, device=device, batch_size=batch_size)
    return RunConfig(backend=spec, **kwargs)


def test_run_config_round_trips_through_json():
    config = _config(
        model_args={"revision": "v2", "dtype": "bfloat16"},
        batch_size=8,
        suites=["a", "b"],
        limit=5,
        seed=3,
        apply_chat_template=True,
    )
    assert RunConfig.from_json(config.to_json()) == config
    assert config.model == "m"
    with pytest.raises(ConfigError, match="unknown run-config field"):
        RunConfig.from_dict({"backend": {"model": "m"}, "batchsize": 4})
    with pytest.raises(ConfigError, match="unknown backend-spec field"):
        RunConfig.from_dict({"backend": {"model": "m", "batchsize": 4}})


def test_fingerprint_tracks_what_changes_numbers_only():
    base = _config()
    assert base.suite_fingerprint("s") == _config(batch_size=4, device="cpu").suite_fingerprint("s")
    assert base.suite_fingerprint("s") != _config(limit=3).suite_fingerprint("s")
    assert base.suite_fingerprint("s") != base.suite_fingerprint("t")
    for args in ({"revision": "v2"}, {"dtype": "bfloat16"}, {"peft": "adapter"}, {"load_in_4bit": True}):
        assert base.suite_fingerprint("s") != _config(model_args=args).suite_fingerprint("s"), args


def test_unknown_suite_fails_before_loading_a_model(tmp_path):
    with pytest.raises(ValueError, match="unknown suite"):
        run_audit(_config("does-not-matter", suites=["nope"]), tmp_path)
    assert not any(tmp_path.iterdir())


@dataclass
class CountingResult(SuiteResult):
    suite: ClassVar[str] = "counting"
    value: int

    def headline(self) -> str:
        return f"call {self.value}"


@pytest.fixture
def counting_suite(monkeypatch):
    calls = []

    def run(backend, config):
        calls.append(config.limit)
        return CountingResult(len(calls))

    monkeypatch.setitem(SUITES, "counting", Suite("counting", "test suite", run, CountingResult))
    return calls


def test_finished_suites_are_reused_and_force_recomputes(tmp_path, tiny_backend, counting_suite):
    config = _config("tiny", suites=["counting"])
    path = run_audit(config, tmp_path, backend=tiny_backend)
    run_audit(config, tmp_path, backend=tiny_backend)
    assert counting_suite == [None]
    doc = json.loads(path.read_text())
    assert doc["suites"]["counting"]["result"] == {"value": 1}
    assert doc["config"]["suites"] == ["counting"]
    assert doc["model"]["n_layers"] == 2
    run_audit(_config("tiny", suites=["counting"], limit=3), tmp_path, backend=tiny_backend)
    run_audit(config, tmp_path, backend=tiny_backend, force=True)
    assert counting_suite == [None, 3, None]


def test_new_weights_at_the_same_spec_recompute(tmp_path, tiny_backend, tokenizer, counting_suite):
    from conftest import build_tiny_model

    from biasaudit.backend.hf import HFBackend

    config = _config("tiny", suites=["counting"])
    run_audit(config, tmp_path, backend=tiny_backend)
    retrained = HFBackend(build_tiny_model(len(tokenizer), seed=1), tokenizer, progress=False)
    run_audit(config, tmp_path, backend=retrained)
    assert counting_suite == [None, None]  # same spec string, other weights: recomputed
    half = HFBackend(build_tiny_model(len(tokenizer), seed=1).to(torch.bfloat16), tokenizer, progress=False)
    run_audit(config, tmp_path, backend=half)
    assert counting_suite == [None, None, None]  # same weights in another dtype: recomputed
    run_audit(config, tmp_path, backend=half)
    assert counting_suite == [None, None, None]  # unchanged: reused


def test_corrupt_suite_file_is_recomputed(tmp_path, tiny_backend, counting_suite):
    config = _config("tiny", suites=["counting"])
    run_audit(config, tmp_path, backend=tiny_backend)
    (tmp_path / "suites" / "counting.json").write_text('{"fingerprint": "trunc')
    run_audit(config, tmp_path, backend=tiny_backend)
    assert counting_suite == [None, None]
    assert json.loads((tmp_path / "suites" / "counting.json").read_text())["result"] == {"value": 2}


def test_all_suites_when_none_named():
    assert [s.name for s in resolve_suites([])] == [name for name, suite in SUITES.items() if suite.backend == "hf"]
    assert [s.name for s in resolve_suites(["yesno_prior", "yesno_prior"])] == ["yesno_prior"]


def test_the_saved_record_holds_headline_and_findings(tmp_path, tiny_backend, counting_suite):
    doc = json.loads(run_audit(_config("tiny", suites=["counting"]), tmp_path, backend=tiny_backend).read_text())
    assert doc["suites"]["counting"]["headline"] == "call 1"
    assert doc["suites"]["counting"]["findings"] == []


def test_a_record_this_version_cannot_read_is_recomputed(tmp_path, tiny_backend, counting_suite):
    config = _config("tiny", suites=["counting"])
    run_audit(config, tmp_path, backend=tiny_backend)
    path = tmp_path / "suites" / "counting.json"
    record = json.loads(path.read_text())
    record["result"]["renamed_field"] = record["result"].pop("value")  # same fingerprint, other shape
    path.write_text(json.dumps(record))
    run_audit(config, tmp_path, backend=tiny_backend)
    assert counting_suite == [None, None]


def test_out_that_is_a_file_fails_before_loading_a_model(tmp_path):
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    with pytest.raises(InvalidRequestError, match="is a file; name a folder"):
        run_audit(_config("does-not-matter", suites=["yesno_prior"]), afile)
    assert afile.read_text() == "not a folder"


def test_an_edited_data_file_recomputes(tmp_path, tiny_backend, monkeypatch):
    calls = []

    def run(backend, config):
        calls.append(1)
        return CountingResult(len(calls))

    monkeypatch.setitem(SUITES, "counting", Suite("counting", "test", run, CountingResult, data=("toy",)))
    data = tmp_path / "data"
    (data / "toy").mkdir(parents=True)
    (data / "toy" / "rows.jsonl").write_text('{"x": 1}\n')
    (data / "other").mkdir()
    config = _config("tiny", suites=["counting"], data_dir=str(data))
    out = tmp_path / "out"
    run_audit(config, out, backend=tiny_backend)
    (data / "other" / "unread.txt").write_text("a dataset this suite does not read")
    run_audit(config, out, backend=tiny_backend)
    assert calls == [1]
    (data / "toy" / "rows.jsonl").write_text('{"x": 2}\n')
    run_audit(config, out, backend=tiny_backend)
    assert calls == [1, 1]


def test_folder_digest_sees_names_and_contents(tmp_path):
    from biasaudit.datasets import folder_digest

    assert folder_digest(tmp_path / "absent") is None
    (tmp_path / "a.txt").write_text("x")
    first = folder_digest(tmp_path)
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    renamed = folder_digest(tmp_path)
    (tmp_path / "b.txt").write_text("y")
    assert len({first, renamed, folder_digest(tmp_path)}) == 3
    assert folder_digest(tmp_path / "b.txt") == folder_digest(tmp_path / "b.txt") is not None
