"""Token activations for SAE training: extracted once from the backend, held out by text, saved for resume.

``extract_activations`` streams per-token residual states (``backend.iter_token_states``), skips the
first ``skip_positions`` tokens of each text, caps positions at ``max_seq_len``, holds out whole texts
for evaluation and drops massive-norm tokens (norm > ``max_norm_factor`` x median), which otherwise
dominate the reconstruction loss. The result is saved beside a training run so that a resumed run
does not read the model again.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biasaudit.concepts.sae import SAETrainingError
from biasaudit.jsonio import read_json, write_json_atomic
from biasaudit.progress import progress_bar

if TYPE_CHECKING:
    from biasaudit.concepts.sae_config import SAETrainingConfig


@dataclass
class _Activations:
    """Extracted tokens: ``train`` (n, d) float16 (float32 if out of range), ``eval`` (m, d) float32."""

    train: np.ndarray
    eval: np.ndarray
    stats: dict[str, Any]


def _corpus_digest(texts: Iterable[str] | Sequence[str]) -> str | None:
    if not isinstance(texts, Sequence) or isinstance(texts, str):
        return None  # a stream is read once; it cannot be hashed up front
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _text_stream(texts: Iterable[str] | Sequence[str], seed: int) -> Iterator[str]:
    """Texts in a seeded random order (a stream is read as given), empty ones skipped."""
    if isinstance(texts, Sequence) and not isinstance(texts, str):
        order = np.random.default_rng([seed, 0]).permutation(len(texts))
        source: Iterable[str] = (texts[int(i)] for i in order)
    else:
        source = texts
    for text in source:
        if not isinstance(text, str):
            raise SAETrainingError(f"texts must be strings, got {type(text).__name__}")
        if text.strip():
            yield text


def extract_activations(
    backend: Any, texts: Iterable[str] | Sequence[str], config: SAETrainingConfig, *, progress: bool = True
) -> _Activations:
    """Read ``config.extract_tokens`` token activations of ``config.layer``; split by text; drop outliers.

    Texts go to the backend in chunks sized to what is still needed, so a large corpus is not run
    through the model in full; each chunk is length-sorted by the backend.
    """
    c = config
    start = time.perf_counter()
    stream = _text_stream(texts, c.seed)
    split_rng = np.random.default_rng([c.seed, 1])
    # A text longer than this many characters has more than max_seq_len tokens anyway (>= 1 char/token).
    max_chars = 8 * c.max_seq_len
    train_parts: list[np.ndarray] = []
    eval_parts: list[np.ndarray] = []
    n_tokens, n_texts = 0, 0
    with progress_bar("extracting activations", c.extract_tokens, enabled=progress) as advance:
        while n_tokens < c.extract_tokens:
            per_text = n_tokens / n_texts if n_texts else 64.0
            want = min(256, max(16, math.ceil((c.extract_tokens - n_tokens) / max(per_text, 1.0))))
            chunk = [t[:max_chars] for t in itertools.islice(stream, want)]
            if not chunk:
                break
            held_out = split_rng.random(len(chunk)) < c.eval_fraction
            n_texts += len(chunk)
            for states in backend.iter_token_states(chunk, [c.layer], skip_positions=c.skip_positions):
                keep = states.position < c.max_seq_len
                values = np.asarray(states.values[c.layer], dtype=np.float32)[keep]
                to_eval = held_out[states.text_index[keep]]
                take = min(len(values), c.extract_tokens - n_tokens)
                train_parts.append(values[:take][~to_eval[:take]])
                eval_parts.append(values[:take][to_eval[:take]])
                n_tokens += take
                advance(take)
                if n_tokens >= c.extract_tokens:
                    break
    d = backend.hidden_size
    train = np.concatenate(train_parts) if train_parts else np.zeros((0, d), np.float32)
    held = np.concatenate(eval_parts) if eval_parts else np.zeros((0, d), np.float32)
    threshold = None
    n_dropped = 0
    if c.max_norm_factor is not None and len(train):
        norms = np.linalg.norm(train, axis=1)
        threshold = float(c.max_norm_factor * np.median(norms))
        keep_train = norms <= threshold
        keep_eval = np.linalg.norm(held, axis=1) <= threshold
        n_dropped = int((~keep_train).sum() + (~keep_eval).sum())
        train, held = train[keep_train], held[keep_eval]
    if len(train) < c.batch_size_tokens or len(held) == 0:
        raise SAETrainingError(
            f"the corpus gave {len(train)} training and {len(held)} held-out tokens (from {n_texts} texts); "
            f"need at least one batch ({c.batch_size_tokens}) and one held-out token: pass more text"
        )
    # float16 halves memory and the resume cache; its 1e-3 relative rounding is far below SAE error.
    if np.abs(train).max() < 6e4:
        train = train.astype(np.float16)
    stats = {
        "n_texts": n_texts,
        "n_tokens_read": n_tokens,
        "n_dropped": n_dropped,
        "dropped_fraction": n_dropped / max(n_tokens, 1),
        "norm_threshold": threshold,
        "extract_time_s": time.perf_counter() - start,
    }
    return _Activations(train, held, stats)


def _save_activations(folder: Path, acts: _Activations, meta: dict[str, Any]) -> None:
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "train.npy", acts.train)
    np.save(tmp / "eval.npy", acts.eval)
    write_json_atomic(tmp / "meta.json", {**meta, "stats": acts.stats})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _load_activations(folder: Path, meta: dict[str, Any]) -> _Activations | None:
    saved = read_json(folder / "meta.json")
    if saved is None or {k: v for k, v in saved.items() if k != "stats"} != meta:
        return None
    try:
        return _Activations(np.load(folder / "train.npy"), np.load(folder / "eval.npy"), saved["stats"])
    except (OSError, ValueError):
        return None
