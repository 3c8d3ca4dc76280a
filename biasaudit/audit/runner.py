"""Run the selected suites on one model and write ``results.json``; resumable.

Each finished suite is saved at once to ``<out>/suites/<name>.json`` with a fingerprint of the
settings that shaped it and of the loaded weights (``backend_identity``). A re-run with the same
settings and weights reuses those files, so an interrupted audit continues where it stopped;
``force=True`` recomputes. Within a suite, scored requests are stored in chunks as they finish
(``audit/store.py``), so a suite killed half-way recomputes only the chunks in flight; a
vision-language suite (``lvlm``) resumes as a whole. Nothing is written outside ``out``.
"""

from __future__ import annotations

import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from biasaudit import __version__
from biasaudit.audit.config import RunConfig
from biasaudit.audit.store import STORE_FILE, RequestStore, StoredBackend
from biasaudit.backend.protocol import Backend
from biasaudit.backend.spec import load_backend
from biasaudit.errors import ConfigError, InvalidRequestError
from biasaudit.jsonio import read_json, remove_stale_temporaries, write_json_atomic, write_jsonl_atomic
from biasaudit.suite import Suite, SuiteResult, resolve_suites

# The results.json layout this version writes (``docs/results.schema.json``); ``report`` reads only this one.
SCHEMA_VERSION = 1


def _environment() -> dict[str, Any]:
    import torch
    import transformers

    return {
        "biasaudit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _model_info(backend: Backend) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": backend.name,
        "weights_fingerprint": backend.fingerprint,
        "n_layers": backend.n_layers,
        "hidden_size": backend.hidden_size,
    }
    model = getattr(backend, "model", None)
    if model is not None:
        params = next(model.parameters())
        info.update(
            n_parameters=int(sum(p.numel() for p in model.parameters())),
            device=str(params.device),
            dtype=str(params.dtype).removeprefix("torch."),
        )
    return info


def backend_identity(backend: Backend) -> dict[str, Any]:
    """What the loaded backend is, for resume keys: weights (dtype included), device type, biasaudit version."""
    model = getattr(backend, "model", None)
    device = next(model.parameters()).device.type if model is not None else str(getattr(backend, "device", ""))
    return {"weights": backend.fingerprint, "device_type": device, "biasaudit": __version__}


def _entry(result: SuiteResult, fingerprint: str, seconds: float) -> dict[str, Any]:
    """A suite's saved record: the result, its headline and findings, and what made it."""
    return {
        "fingerprint": fingerprint,
        "seconds": round(seconds, 2),
        "headline": result.headline(),
        "findings": [finding.to_dict() for finding in result.findings()],
        "result": result.to_dict(),
    }


def _reusable(suite: Suite, cached: Any, fingerprint: str) -> dict[str, Any] | None:
    """A saved suite record made with the same fingerprint that this version still reads, else None."""
    if not isinstance(cached, dict) or cached.get("fingerprint") != fingerprint:
        return None
    if not {"headline", "findings", "result"} <= set(cached):
        return None
    try:
        suite.load(cached["result"])
    except (ConfigError, KeyError, TypeError):
        return None  # written by another version of the suite: recompute
    return cached


def run_audit(
    config: RunConfig,
    out: Path,
    *,
    backend: Backend | None = None,
    force: bool = False,
    console: Console | None = None,
) -> Path:
    """Run ``config``'s suites, save each as it finishes, and write ``out/results.json``."""
    console = console or Console(stderr=True)
    suites = resolve_suites(config.suites, config.backend.backend)  # fail on a typo before loading a model
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidRequestError(f"--out {out} is a file; name a folder (it is created if missing)")
    suite_dir = out / "suites"
    if backend is None:
        with console.status(f"loading model {config.model!r}"):
            backend = load_backend(config.backend)
    if out.is_dir():
        remove_stale_temporaries(out)
    if force:
        (out / STORE_FILE).unlink(missing_ok=True)
    identity = backend_identity(backend)
    store = RequestStore(out / STORE_FILE)
    stored = StoredBackend(backend, store, identity, config.request_chunk, record=config.log_samples)
    results: dict[str, Any] = {}
    try:
        for i, suite in enumerate(suites, 1):
            fingerprint = config.suite_fingerprint(suite.name, identity, suite.inputs_digest(config.data_dir))
            path = suite_dir / f"{suite.name}.json"
            samples_path = out / "samples" / f"{suite.name}.jsonl"
            cached = None if force else _reusable(suite, read_json(path), fingerprint)
            if cached is not None and (samples_path.is_file() or not config.log_samples):
                console.print(f"[{i}/{len(suites)}] {suite.name}: reusing {path}")
                results[suite.name] = cached
                continue
            console.print(f"[{i}/{len(suites)}] {suite.name}: {suite.description}")
            started = time.perf_counter()
            # The request store keys text requests; a vision suite's image requests run unstored.
            target = stored if suite.backend == "hf" else backend
            result = suite.run(target, config)
            requests = stored.take_samples()
            if config.log_samples:
                examples = [{"type": "example", **row} for row in result.samples()]
                write_jsonl_atomic(samples_path, examples + [{"type": "request", **row} for row in requests])
            entry = _entry(result, fingerprint, time.perf_counter() - started)
            write_json_atomic(path, entry)
            results[suite.name] = entry
    finally:
        store.close()
    document = {
        "schema_version": SCHEMA_VERSION,
        "biasaudit_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "model": _model_info(backend),
        "environment": _environment(),
        "requests": {"chunks_reused": stored.reused, "chunks_computed": stored.computed},
        "suites": results,
    }
    results_path = out / "results.json"
    write_json_atomic(results_path, document)
    return results_path
