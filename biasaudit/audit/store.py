"""The run's request store: scored requests saved in small units, so a killed audit loses at most one unit.

An audit wraps its backend in ``StoredBackend``. Every ``loglikelihood``, ``label_log_probs`` and greedy
``generate`` call is cut into fixed chunks of ``chunk_size`` requests (by position in the call, so an
interrupted and an uninterrupted run form the same chunks and get bit-identical numbers). A chunk whose
result is in the store is read back; any other chunk is computed whole and committed at once. The store
is one SQLite file in the run folder (``requests.sqlite``; SQLite's journal makes each commit atomic,
so a SIGKILL at any moment leaves it readable), keyed by a hash of what the loaded model is (weights
fingerprint, device type, biasaudit version), the method, its options and the chunk's requests: the
same idea as lm-evaluation-harness's request cache, at chunk granularity.

Sampled generation with a ``seed`` is stored too, one unit per call rather than per chunk: the backend
reseeds at the start of each call, so only the whole call reproduces it (negbias's knowledge probing
makes one seeded call per 64 questions, so that is its unit). Unseeded sampling and calls with logits
processors pass through unstored: their output depends on random state or on processor objects that
cannot be keyed. Hidden states pass through too (the concept pipeline caches activations itself).

``StoredBackend`` also records every request and its result per suite, for ``--log-samples``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biasaudit.backend.protocol import Backend, LabelMode, LoglikelihoodResult
from biasaudit.errors import InvalidRequestError

DEFAULT_CHUNK_SIZE = 256
STORE_FILE = "requests.sqlite"


class RequestStore:
    """Chunk results in an SQLite file: ``get(key)``, ``put(key, value)`` (one committed transaction each)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS chunks (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM chunks WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self._db:  # one transaction: committed whole or not at all
            self._db.execute("INSERT OR REPLACE INTO chunks VALUES (?, ?)", (key, json.dumps(value)))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class StoredBackend:
    """A ``Backend`` that answers scoring requests from a ``RequestStore`` and stores what it computes.

    identity: what the wrapped backend is (``runner.backend_identity``); part of every key.
    chunk_size: requests per stored unit. Smaller loses less work on a kill; larger batches better on a
        GPU. The chunks are part of the computation (batch composition), so they are part of the key.
    Counts: ``reused`` / ``computed`` chunks since construction. ``samples`` holds the requests and
    results since the last ``take_samples()`` (the ``--log-samples`` record of one suite); with
    ``record=False`` nothing is kept, so a run without ``--log-samples`` holds no copy of its requests.
    """

    def __init__(
        self,
        backend: Backend,
        store: RequestStore,
        identity: dict[str, Any],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        record: bool = True,
    ) -> None:
        if chunk_size < 1:
            raise InvalidRequestError(f"chunk_size must be at least 1, got {chunk_size}")
        self._backend = backend
        self._store = store
        self._identity = identity
        self.chunk_size = chunk_size
        self.reused = 0
        self.computed = 0
        self.record = record
        self.samples: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:  # name, n_layers, fingerprint, hidden_states, format_chat...
        return getattr(self._backend, name)

    def take_samples(self) -> list[dict[str, Any]]:
        samples, self.samples = self.samples, []
        return samples

    # ------------------------------------------------------------------ the chunk loop
    def _chunked(
        self,
        method: str,
        requests: list[Any],
        options: dict[str, Any],
        compute: Callable[[list[Any]], list[Any]],
        chunk_size: int | None = None,
    ) -> list[Any]:
        results: list[Any] = []
        size = chunk_size or self.chunk_size
        for start in range(0, len(requests), size):
            chunk = requests[start : start + size]
            key = hashlib.sha256(
                json.dumps([self._identity, method, options, chunk], sort_keys=True).encode()
            ).hexdigest()
            value = self._store.get(key)
            if value is None:
                value = compute(chunk)
                self._store.put(key, value)
                self.computed += 1
            else:
                self.reused += 1
            results.extend(value)
        if self.record:
            self.samples.extend(
                {"method": method, **options, "request": request, "result": result}
                for request, result in zip(requests, results, strict=True)
            )
        return results

    # ------------------------------------------------------------------ stored methods
    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], *, apply_chat_template: bool = False
    ) -> list[LoglikelihoodResult]:
        if len(requests) == 0:
            return self._backend.loglikelihood(requests, apply_chat_template=apply_chat_template)

        def compute(chunk: list[Any]) -> list[Any]:
            scored = self._backend.loglikelihood([tuple(r) for r in chunk], apply_chat_template=apply_chat_template)
            return [[r.logprob, r.is_greedy, r.n_tokens] for r in scored]

        rows = self._chunked(
            "loglikelihood",
            [list(r) for r in requests],
            {"apply_chat_template": apply_chat_template},
            compute,
        )
        return [LoglikelihoodResult(float(lp), bool(greedy), int(n)) for lp, greedy, n in rows]

    def label_log_probs(
        self,
        prompts: Sequence[str],
        labels: Sequence[str],
        *,
        mode: LabelMode = "first_token",
        length_normalize: bool = False,
        apply_chat_template: bool = False,
    ) -> np.ndarray:
        if len(prompts) == 0 or len(labels) == 0:
            return self._backend.label_log_probs(
                prompts, labels, mode=mode, length_normalize=length_normalize, apply_chat_template=apply_chat_template
            )
        options = {
            "labels": list(labels),
            "mode": mode,
            "length_normalize": length_normalize,
            "apply_chat_template": apply_chat_template,
        }

        def compute(chunk: list[Any]) -> list[Any]:
            values = self._backend.label_log_probs(
                chunk, labels, mode=mode, length_normalize=length_normalize, apply_chat_template=apply_chat_template
            )
            return np.asarray(values, dtype=np.float64).tolist()

        rows = self._chunked("label_log_probs", list(prompts), options, compute)
        return np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(labels))

    def generate(self, prompts: Sequence[str], **kwargs: Any) -> list[str]:
        sampled = bool(kwargs.get("do_sample"))
        if len(prompts) == 0 or (sampled and kwargs.get("seed") is None) or kwargs.get("logits_processors"):
            return self._backend.generate(prompts, **kwargs)
        copies = int(kwargs.get("num_return_sequences", 1))
        options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(kwargs.items())}

        def compute(chunk: list[Any]) -> list[Any]:
            texts = self._backend.generate(chunk, **kwargs)
            return [texts[i * copies : (i + 1) * copies] for i in range(len(chunk))]

        # A seeded sampled call is reproduced only whole (the backend reseeds per call): one unit per call.
        rows = self._chunked("generate", list(prompts), options, compute, len(prompts) if sampled else None)
        return [text for row in rows for text in row]
