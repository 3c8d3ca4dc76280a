"""Using a saved prior: refused for other weights (by fingerprint, not name), another label mode or
prompt, and refused when it does not say which weights it was fitted on unless the user opts in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biasaudit.calibration import ContextualCalibrator, ICLClassifier, PriorCalibrator, PriorMismatchError
from biasaudit.calibration.base import UnknownPriorModelError

TEMPLATE = "Review: {text}\nSentiment: {label}"
LABELS = ["negative", "positive"]
DEMOS = [("a warm, funny and moving film", "positive"), ("dull, slow and far too long", "negative")]


@pytest.fixture
def saved(tmp_path, tiny_backend):
    clf = ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS, ContextualCalibrator()).fit()
    path = tmp_path / "prior.json"
    clf.calibrator_.save(path)
    return path, clf


def test_a_saved_prior_records_the_weights_fingerprint_and_is_used_on_the_same_weights(saved, tiny_backend):
    path, clf = saved
    data = json.loads(path.read_text())
    assert data["model_fingerprint"] == tiny_backend.fingerprint
    loaded = PriorCalibrator.load(path, prompt=clf.prompt_, backend=tiny_backend)
    fresh = ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS).use_prior(loaded)
    np.testing.assert_allclose(fresh.predict_proba(["great"]), clf.predict_proba(["great"]))


def test_other_weights_under_the_same_name_are_refused(saved, tokenizer):
    from conftest import build_tiny_model

    from biasaudit.backend.hf import HFBackend

    path, clf = saved
    impostor = HFBackend(build_tiny_model(len(tokenizer), seed=1), tokenizer, progress=False, name=clf.backend.name)
    assert impostor.name == clf.backend.name and impostor.fingerprint != clf.backend.fingerprint
    loaded = PriorCalibrator.load(path)
    with pytest.raises(PriorMismatchError, match=r"other weights.*fingerprint"):
        ICLClassifier(impostor, TEMPLATE, LABELS, DEMOS).use_prior(loaded)
    with pytest.raises(PriorMismatchError, match="other weights"):
        PriorCalibrator.load(path, prompt=clf.prompt_, backend=impostor)


def test_another_label_mode_or_prompt_is_refused_with_what_differs(saved, tiny_backend):
    path, _ = saved
    loaded = PriorCalibrator.load(path)
    with pytest.raises(PriorMismatchError, match=r"label mode 'first_token'.*not 'full_sequence'"):
        ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS, mode="full_sequence").use_prior(loaded)
    with pytest.raises(PriorMismatchError, match="another prompt"):
        ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS[:1]).use_prior(loaded)
    with pytest.raises(PriorMismatchError, match="labels"):
        ICLClassifier(tiny_backend, TEMPLATE, ["bad", "good"], DEMOS[:0]).use_prior(loaded)


def test_a_prior_without_a_fingerprint_needs_an_explicit_opt_in(saved, tiny_backend, tmp_path):
    path, clf = saved
    data = json.loads(path.read_text())
    data["model"] = None
    data["model_fingerprint"] = None  # e.g. fitted on precomputed log-probs, or saved by an older version
    anonymous = tmp_path / "anonymous.json"
    anonymous.write_text(json.dumps(data))
    loaded = PriorCalibrator.load(anonymous)
    with pytest.raises(UnknownPriorModelError, match="allow_unknown_model=True"):
        ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS).use_prior(loaded)
    with pytest.raises(UnknownPriorModelError):
        PriorCalibrator.load(anonymous, prompt=clf.prompt_, backend=tiny_backend)
    used = ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS).use_prior(loaded, allow_unknown_model=True)
    assert used.calibrator_ is loaded
    assert PriorCalibrator.load(anonymous, backend=tiny_backend, allow_unknown_model=True).model_fingerprint_ is None
