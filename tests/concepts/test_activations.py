"""ActivationStore: cached == computed, nothing recomputed, corrupt shards recomputed."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from biasaudit.concepts.activations import ActivationStore
from biasaudit.errors import InvalidRequestError, LayerOutOfRangeError

TEXTS = [f"Sentence {i}: the {w} was on the table." for i, w in enumerate(["cup", "book", "pen", "key"] * 5)]


def test_store_equals_backend_and_reuses_cache(tiny_model, tokenizer, tiny_backend, tmp_path):
    from biasaudit.backend.hf import HFBackend

    small_batches = HFBackend(tiny_model, tokenizer, batch_size=4, progress=False)
    store = ActivationStore(small_batches, tmp_path, shard_size=7, progress=False)
    got = store.get(TEXTS, [1, 2])
    direct = tiny_backend.hidden_states(TEXTS, [1, 2])
    for layer in (1, 2):
        np.testing.assert_array_equal(got[layer], direct[layer])
    assert store.n_computed == len(TEXTS)
    # Flushed every 7 texts (checked after each batch of 4): 8 + 8 + 4 rows.
    assert len(list((store.root / "layer-1").glob("*.npz"))) == 3

    again = ActivationStore(tiny_backend, tmp_path, progress=False)
    reordered = again.get(TEXTS[::-1], [2])
    assert again.n_computed == 0
    np.testing.assert_array_equal(reordered[2], direct[2][::-1])

    # Only the new text and the new layer run.
    more = [*TEXTS, "A brand new sentence."]
    assert again.missing(more, [1, 2]) == ["A brand new sentence."]
    again.get(more, [0, 2])
    assert again.n_computed == len(more)  # layer 0 was missing for every text


def test_pooling_and_model_keep_separate_caches(tiny_backend, tmp_path):
    last = ActivationStore(tiny_backend, tmp_path, pooling="last", progress=False).get(TEXTS[:4], [1])
    mean = ActivationStore(tiny_backend, tmp_path, pooling="mean", progress=False).get(TEXTS[:4], [1])
    assert not np.allclose(last[1], mean[1])
    np.testing.assert_array_equal(mean[1], tiny_backend.hidden_states(TEXTS[:4], [1], pooling="mean")[1])


def test_corrupt_shard_is_recomputed_not_reused(tiny_backend, tmp_path, caplog):
    store = ActivationStore(tiny_backend, tmp_path, progress=False)
    expected = store.get(TEXTS, [1])[1]
    (shard,) = (store.root / "layer-1").glob("*.npz")
    shard.write_bytes(shard.read_bytes()[:100])
    fresh = ActivationStore(tiny_backend, tmp_path, progress=False)
    with caplog.at_level(logging.WARNING):
        got = fresh.get(TEXTS, [1])[1]
    assert "corrupt" in caplog.text
    assert fresh.n_computed == len(TEXTS)
    np.testing.assert_array_equal(got, expected)


def test_wrong_width_shard_is_recomputed(tiny_backend, tmp_path):
    store = ActivationStore(tiny_backend, tmp_path, progress=False)
    store.get(TEXTS[:3], [1])
    (shard,) = (store.root / "layer-1").glob("*.npz")
    with np.load(shard) as data:
        keys = data["keys"]
    np.savez(shard, keys=keys, values=np.zeros((len(keys), 5), np.float32))
    fresh = ActivationStore(tiny_backend, tmp_path, progress=False)
    fresh.get(TEXTS[:3], [1])
    assert fresh.n_computed == 3


def test_layers_normalised_and_checked(tiny_backend, tmp_path):
    store = ActivationStore(tiny_backend, False, progress=False)
    assert set(store.get(TEXTS[:2], [-1])) == {tiny_backend.n_layers}
    assert store.root is None and not any(tmp_path.iterdir())
    with pytest.raises(LayerOutOfRangeError, match="out of range"):
        store.get(TEXTS[:2], [tiny_backend.n_layers + 1])
    with pytest.raises(InvalidRequestError):
        store.get([], [1])
    with pytest.raises(InvalidRequestError, match="pooling"):
        ActivationStore(tiny_backend, False, pooling="max")  # type: ignore[arg-type]
