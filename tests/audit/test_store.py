"""The request store: chunks computed once, read back exactly, and a run killed with SIGKILL resumes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from biasaudit.audit import RunConfig, run_audit
from biasaudit.audit.store import STORE_FILE, RequestStore, StoredBackend
from biasaudit.backend.spec import BackendSpec

IDENTITY = {"weights": "test", "device_type": "cpu", "biasaudit": "0"}
PROMPTS = [f"Review {i}: {'great' if i % 2 else 'awful'} film. Sentiment:" for i in range(7)]


def _stored(backend, tmp_path: Path, chunk_size: int = 3) -> StoredBackend:
    return StoredBackend(backend, RequestStore(tmp_path / STORE_FILE), IDENTITY, chunk_size)


def test_chunks_are_computed_once_and_read_back_exactly(tiny_backend, tmp_path):
    stored = _stored(tiny_backend, tmp_path)
    first = stored.label_log_probs(PROMPTS, [" good", " bad"])
    assert (stored.computed, stored.reused) == (3, 0)  # 7 prompts in chunks of 3
    np.testing.assert_allclose(first, tiny_backend.label_log_probs(PROMPTS, [" good", " bad"]), atol=1e-5)
    again = _stored(tiny_backend, tmp_path)  # a new process on the same run folder
    assert np.array_equal(again.label_log_probs(PROMPTS, [" good", " bad"]), first)
    assert (again.computed, again.reused) == (0, 3)
    again.label_log_probs(PROMPTS, [" good", " bad"], mode="full_sequence")  # other options: other keys
    assert again.computed == 3

    pairs = [(p, " good") for p in PROMPTS]
    assert again.loglikelihood(pairs) == _stored(tiny_backend, tmp_path).loglikelihood(pairs)
    texts = again.generate(PROMPTS[:4], max_new_tokens=3)
    assert texts == tiny_backend.generate(PROMPTS[:4], max_new_tokens=3)
    computed = again.computed
    again.generate(PROMPTS[:4], max_new_tokens=3, do_sample=True)  # unseeded sampling: passes through
    assert again.computed == computed
    # seeded sampling: one unit per call (7 prompts > chunk of 3), the same texts as the unstored backend
    kwargs = {"max_new_tokens": 3, "do_sample": True, "seed": 1, "num_return_sequences": 2}
    sampled = again.generate(PROMPTS, **kwargs)
    assert sampled == tiny_backend.generate(PROMPTS, **kwargs) and again.computed == computed + 1
    fresh = _stored(tiny_backend, tmp_path)
    assert fresh.generate(PROMPTS, **kwargs) == sampled and (fresh.computed, fresh.reused) == (0, 1)
    assert fresh.generate(PROMPTS, **{**kwargs, "seed": 2}) != sampled and fresh.computed == 1
    samples = again.take_samples()
    assert samples[0]["method"] == "label_log_probs" and samples[0]["request"] == PROMPTS[0]
    assert {s["method"] for s in samples} == {"label_log_probs", "loglikelihood", "generate"}
    assert again.take_samples() == []


def test_a_changed_identity_recomputes(tiny_backend, tmp_path):
    _stored(tiny_backend, tmp_path).label_log_probs(PROMPTS, [" good", " bad"])
    other = StoredBackend(tiny_backend, RequestStore(tmp_path / STORE_FILE), {**IDENTITY, "weights": "new"}, 3)
    other.label_log_probs(PROMPTS, [" good", " bad"])
    assert (other.computed, other.reused) == (3, 0)


def test_bad_requests_still_fail_clearly(tiny_backend, tmp_path):
    from biasaudit.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="no prompts"):
        _stored(tiny_backend, tmp_path).label_log_probs([], [" good"])


def test_log_samples_and_resume_from_the_store(tiny_backend, tmp_path):
    config = RunConfig(backend=BackendSpec(model="tiny"), suites=["yesno_prior"], request_chunk=8)
    path = run_audit(config, tmp_path, backend=tiny_backend)
    doc = json.loads(path.read_text())
    assert doc["requests"]["chunks_computed"] > 1 and doc["requests"]["chunks_reused"] == 0
    assert not (tmp_path / "samples").exists()
    logged = RunConfig(**{**config.__dict__, "log_samples": True})
    doc2 = json.loads(run_audit(logged, tmp_path, backend=tiny_backend).read_text())
    # the suite ran again to log its samples, every chunk from the store
    assert doc2["requests"] == {"chunks_reused": doc["requests"]["chunks_computed"], "chunks_computed": 0}
    assert doc2["suites"]["yesno_prior"]["result"] == doc["suites"]["yesno_prior"]["result"]
    rows = [json.loads(line) for line in (tmp_path / "samples" / "yesno_prior.jsonl").read_text().splitlines()]
    n = doc["suites"]["yesno_prior"]["result"]["n_prompts"]
    assert [row["type"] for row in rows] == ["example"] * n + ["request"] * n
    assert set(rows[0]) == {"type", "prompt", "p_yes"} and rows[0]["prompt"] == rows[n]["request"]
    assert rows[n]["method"] == "label_log_probs" and len(rows[n]["result"]) == 2


# ------------------------------------------------------------------------------------------ kill -9
def _audit(out: Path, chunk: int) -> subprocess.Popen:
    args = ["audit", "default", "--suite", "yesno_prior", "--out", str(out), "--request-chunk", str(chunk)]
    return subprocess.Popen(
        [sys.executable, "-m", "biasaudit.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def _stored_chunks(out: Path) -> int:
    try:
        with sqlite3.connect(out / STORE_FILE, timeout=0.05) as db:
            return int(db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
    except sqlite3.Error:
        return 0


def _comparable(doc: dict) -> dict:
    doc = {k: v for k, v in doc.items() if k not in ("created", "requests")}
    doc["suites"] = {name: {k: v for k, v in e.items() if k != "seconds"} for name, e in doc["suites"].items()}
    return doc


def _check_files(out: Path) -> None:
    """Every file of the run folder parses (temporary files of an interrupted atomic write excepted)."""
    for path in out.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                [json.loads(line) for line in path.read_text().splitlines()]
            elif path.name == STORE_FILE:
                with sqlite3.connect(path) as db:
                    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


CHUNK = 4  # yesno_prior scores 40 prompts: 10 chunks


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, default_model_dir) -> Path:
    out = tmp_path_factory.mktemp("whole")
    whole = _audit(out, CHUNK)
    assert whole.wait(timeout=600) == 0, whole.stderr.read().decode() if whole.stderr else ""
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 5])
def test_sigkill_mid_suite_then_resume_gives_the_uninterrupted_result(tmp_path, uninterrupted, kill_after):
    chunk = CHUNK
    total = _stored_chunks(uninterrupted)
    assert total == 10

    out = tmp_path / "killed"
    run = _audit(out, chunk)
    deadline = time.monotonic() + 600
    while _stored_chunks(out) < kill_after and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert run.poll() is None, "the run finished before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = _stored_chunks(out)
    assert kill_after <= done < total and not (out / "results.json").exists()
    _check_files(out)

    resumed = _audit(out, chunk)
    assert resumed.wait(timeout=600) == 0
    _check_files(out)
    assert not [p for p in out.rglob(".*") if p.is_file() and p.name != STORE_FILE]  # no leftover temporaries
    doc = json.loads((out / "results.json").read_text())
    assert doc["requests"] == {"chunks_reused": done, "chunks_computed": total - done}
    assert _comparable(doc) == _comparable(json.loads((uninterrupted / "results.json").read_text()))
