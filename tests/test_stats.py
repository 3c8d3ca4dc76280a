from __future__ import annotations

import numpy as np
import pytest

from biasaudit.stats import bootstrap_ci


def test_constant_values_give_a_point_interval():
    assert bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))


def test_interval_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(size=200)
    low, high = bootstrap_ci(values, seed=5)
    assert (low, high) == bootstrap_ci(values, seed=5)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(200), rel=0.25)


def test_too_few_values_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci(np.array([1.0]))


def test_json_is_written_atomically_and_readable(tmp_path):
    import os

    from biasaudit.jsonio import read_json, write_json_atomic

    path = tmp_path / "sub" / "r.json"
    write_json_atomic(path, {"a": [1, 2]})
    assert read_json(path) == {"a": [1, 2]}
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left
    path.write_text("{broken")
    assert read_json(path) is None
