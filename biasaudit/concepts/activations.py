"""Pooled residual-stream activations, computed once and cached on disk.

Concept work asks for the same activations many times (every CAV repeat, every layer sweep, every audit
re-run). ``ActivationStore`` answers from a disk cache keyed by (model fingerprint, pooling, layer,
text hash) and computes only what is missing, in one streamed pass over the backend's
``iter_hidden_states`` (length-sorted batches, forward stopped after the deepest requested layer).

Layout: ``<cache>/activations/<fingerprint>/<pooling>/layer-<L>/<shard>.npz`` (``<pooling>`` is "last" or
"mean-skip1": mean pooling without position 0); each shard holds the
SHA-256 of its texts (``keys``) and their float32 activations (``values``). Shards are written
atomically and flushed every ``shard_size`` texts, so extraction memory is one shard, not the dataset.
A shard that fails to load or does not match the model's width is deleted and recomputed, never reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biasaudit.backend.protocol import Backend, Pooling
from biasaudit.errors import InvalidRequestError, LayerOutOfRangeError
from biasaudit.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 2048


def text_key(text: str) -> str:
    """Cache key of a text: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ActivationStore:
    """Residual-stream activations of texts at chosen layers, pooled per text, cached on disk.

    Parameters
    ----------
    backend:
        Any ``Backend``; its ``fingerprint`` keys the cache.
    cache_dir:
        Root folder (``None``: ``$BIASAUDIT_CACHE``, i.e. ``biasaudit.models.cache_dir()``). Pass
        ``False`` to keep nothing on disk.
    pooling:
        ``"last"`` (last token, the BiasLens default) or ``"mean"`` over tokens.
    shard_size:
        Texts per cache shard (the unit of memory during extraction).
    progress:
        Show a progress bar while computing.
    """

    def __init__(
        self,
        backend: Backend,
        cache_dir: str | Path | bool | None = None,
        *,
        pooling: Pooling = "last",
        shard_size: int = DEFAULT_SHARD_SIZE,
        progress: bool = True,
    ) -> None:
        if pooling not in ("last", "mean"):
            raise InvalidRequestError(f"pooling must be 'last' or 'mean', not {pooling!r}")
        if shard_size < 1:
            raise InvalidRequestError(f"shard_size must be >= 1, not {shard_size}")
        self.backend = backend
        self.pooling: Pooling = pooling
        self.shard_size = shard_size
        self.progress = progress
        if cache_dir is False:
            self.root: Path | None = None
        else:
            if cache_dir is None or cache_dir is True:
                from biasaudit.models import cache_dir as default_cache_dir

                cache_dir = default_cache_dir()
            # "mean" folders written before position 0 was left out of the mean must not be reused.
            folder = "mean-skip1" if pooling == "mean" else pooling
            self.root = Path(cache_dir) / "activations" / backend.fingerprint / folder
        # In-memory index, loaded lazily per layer: text key -> vector.
        self._memory: dict[int, dict[str, np.ndarray]] = {}
        self.n_computed = 0

    # ------------------------------------------------------------------ cache
    def _layer_dir(self, layer: int) -> Path:
        assert self.root is not None
        return self.root / f"layer-{layer}"

    def _index(self, layer: int) -> dict[str, np.ndarray]:
        if layer not in self._memory:
            self._memory[layer] = self._load_layer(layer) if self.root is not None else {}
        return self._memory[layer]

    def _load_layer(self, layer: int) -> dict[str, np.ndarray]:
        index: dict[str, np.ndarray] = {}
        folder = self._layer_dir(layer)
        if not folder.is_dir():
            return index
        for shard in sorted(folder.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, values = data["keys"], data["values"]
                if values.ndim != 2 or values.shape != (len(keys), self.backend.hidden_size):
                    raise InvalidRequestError(
                        f"shape {values.shape} does not fit {len(keys)} keys x {self.backend.hidden_size}"
                    )
                if not np.isfinite(values).all():
                    raise InvalidRequestError("non-finite values")
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
                log.warning("activation cache shard %s is corrupt (%s); deleting it, it will be recomputed", shard, exc)
                shard.unlink(missing_ok=True)
                continue
            for key, vector in zip(keys.tolist(), values, strict=True):
                index[str(key)] = vector
        return index

    def _write_shard(self, layer: int, keys: list[str], values: np.ndarray) -> None:
        if self.root is None or not keys:
            return
        folder = self._layer_dir(layer)
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:20]
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=np.array(keys), values=values.astype(np.float32))
            os.replace(tmp, folder / f"{name}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _layers(self, layers: Sequence[int]) -> list[int]:
        """Distinct layers, negatives counted from the top (-1 = last block), range-checked."""
        top = self.backend.n_layers
        out = set()
        for layer in layers:
            value = int(layer) + (top + 1 if int(layer) < 0 else 0)
            if not 0 <= value <= top:
                raise LayerOutOfRangeError(
                    f"layer {layer} is out of range: {self.backend.name} has layers 0 (embeddings) to {top}"
                )
            out.add(value)
        if not out:
            raise InvalidRequestError("activations need at least one layer")
        return sorted(out)

    # ------------------------------------------------------------------ public API
    def missing(self, texts: Sequence[str], layers: Sequence[int]) -> list[str]:
        """Distinct texts whose activation is not cached at one or more of ``layers``."""
        indexes = [self._index(layer) for layer in self._layers(layers)]
        out = []
        for text in dict.fromkeys(texts):
            key = text_key(text)
            if any(key not in index for index in indexes):
                out.append(text)
        return out

    def extract(self, texts: Sequence[str], layers: Sequence[int]) -> int:
        """Compute and cache whatever is missing for ``texts`` x ``layers``; returns how many texts ran."""
        layers = self._layers(layers)
        todo = self.missing(texts, layers)
        if not todo:
            return 0
        pending_keys: list[str] = []
        pending: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}

        def flush() -> None:
            for layer in layers:
                values = np.concatenate(pending[layer]) if pending[layer] else np.zeros((0, 0), np.float32)
                index = self._index(layer)
                for key, vector in zip(pending_keys, values, strict=True):
                    index[key] = vector
                self._write_shard(layer, pending_keys, values)
                pending[layer] = []
            pending_keys.clear()

        with progress_bar("activations", len(todo), enabled=self.progress and len(todo) >= 64) as advance:
            for batch, pooled in self.backend.iter_hidden_states(todo, layers, pooling=self.pooling):
                pending_keys.extend(text_key(todo[int(b)]) for b in batch)
                for layer in layers:
                    pending[layer].append(np.asarray(pooled[layer], dtype=np.float32))
                advance(len(batch))
                if len(pending_keys) >= self.shard_size:
                    flush()
            if pending_keys:
                flush()
        self.n_computed += len(todo)
        return len(todo)

    def get(self, texts: Sequence[str], layers: Sequence[int]) -> dict[int, np.ndarray]:
        """{layer: (len(texts), hidden_size) float32}, computing only what the cache lacks.

        Keys are the normalised layer numbers (``-1`` comes back as ``backend.n_layers``).
        """
        if len(texts) == 0:
            raise InvalidRequestError("activations requested for no texts")
        layers = self._layers(layers)
        self.extract(texts, layers)
        keys = [text_key(t) for t in texts]
        return {layer: np.stack([self._index(layer)[k] for k in keys]) for layer in layers}
