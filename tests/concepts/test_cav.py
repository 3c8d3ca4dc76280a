"""CAV maths on synthetic activations with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from biasaudit.concepts.cav import ConceptActivationVector, pairwise_stability
from biasaudit.errors import TooFewExamplesError


def planted(n: int = 200, d: int = 32, strength: float = 3.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    generic = rng.normal(size=(n, d)) + 5.0  # a large shared offset, as in a residual stream
    concept = rng.normal(size=(n, d)) + 5.0 + strength * u
    return concept, generic, u


def test_recovers_planted_direction():
    concept, generic, u = planted()
    cav = ConceptActivationVector(n_repeats=5).fit(concept, generic)
    assert float(cav.cav_ @ u) > 0.95
    assert np.isclose(np.linalg.norm(cav.cav_), 1.0)
    # Bayes accuracy of two unit-variance Gaussians 3 apart is Phi(1.5) = 0.933.
    assert 0.88 < cav.accuracy_ <= 0.95
    assert cav.cavs_.shape == (5, 32)
    assert 0.9 < cav.stability_ <= 1.0
    # Concept rows score higher along the CAV than generic rows.
    assert cav.score_samples(concept).mean() > cav.score_samples(generic).mean()


def test_no_signal_gives_chance_accuracy_and_unstable_direction():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 32)), rng.normal(size=(200, 32))
    cav = ConceptActivationVector(n_repeats=5).fit(a, b)
    assert 0.35 < cav.accuracy_ < 0.65
    assert cav.stability_ < 0.9


def test_deterministic_given_seed_and_sensitive_to_it():
    concept, generic, _ = planted(strength=0.5)
    one = ConceptActivationVector(n_repeats=3, random_state=4).fit(concept, generic)
    two = ConceptActivationVector(n_repeats=3, random_state=4).fit(concept, generic)
    three = ConceptActivationVector(n_repeats=3, random_state=5).fit(concept, generic)
    np.testing.assert_array_equal(one.cav_, two.cav_)
    assert not np.array_equal(one.cav_, three.cav_)


def test_unbalanced_pools_are_balanced_by_resampling():
    concept, generic, u = planted(n=400)
    cav = ConceptActivationVector(n_repeats=3).fit(concept[:40], generic)
    assert cav.n_concept_ == 40 and cav.n_generic_ == 400
    assert float(cav.cav_ @ u) > 0.8


def test_pairwise_stability_known_values():
    assert pairwise_stability(np.array([[1.0, 0.0]])) == 1.0
    assert pairwise_stability(np.array([[1.0, 0.0], [0.0, 2.0]])) == pytest.approx(0.0)
    assert pairwise_stability(np.array([[1.0, 0.0], [-3.0, 0.0]])) == pytest.approx(-1.0)


def test_bad_input():
    concept, generic, _ = planted()
    with pytest.raises(TooFewExamplesError, match="too few"):
        ConceptActivationVector().fit(concept[:5], generic)
    with pytest.raises(ValueError, match="same width"):
        ConceptActivationVector().fit(concept, generic[:, :3])
    bad = concept.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ConceptActivationVector().fit(bad, generic)
    with pytest.raises(ValueError, match="subsample"):
        ConceptActivationVector(subsample=0).fit(concept, generic)


def framed(concept_signal: float, n_templates: int = 12, per_template: int = 10, d: int = 32, seed: int = 0):
    """Template sentences whose activation is their frame's vector (+ noise), plus ``concept_signal``
    along one direction for concept rows. Concept and generic text never share a frame."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    frames = rng.normal(size=(2 * n_templates, d)) * 2.0
    rows, groups = [], []
    for side in (0, 1):
        X = np.concatenate(
            [frames[side * n_templates + t] + rng.normal(size=(per_template, d)) for t in range(n_templates)]
        )
        rows.append(X + (concept_signal * u if side == 0 else 0.0))
        groups.append([f"template:{side}-{t}" for t in range(n_templates) for _ in range(per_template)])
    return rows[0], rows[1], groups[0], groups[1]


def one_fit() -> ConceptActivationVector:
    return ConceptActivationVector(C=10.0, n_repeats=1, cv_repeats=1, subsample=1.0)


def test_group_folds_do_not_read_the_frame():
    """With no concept signal, row folds still reach ~0.9 by recognising frames seen in training; folds
    that hold out whole templates are at chance."""
    concept, generic, g_c, g_g = framed(concept_signal=0.0)
    by_row = one_fit().fit(concept, generic)
    by_template = one_fit().fit(concept, generic, g_c, g_g)
    assert by_row.accuracy_ > 0.85 and by_row.result("c", 1).cv_unit == "sentence"
    assert by_template.accuracy_ < 0.6 and by_template.result("c", 1).cv_unit == "group"


def test_group_folds_still_read_a_real_concept():
    concept, generic, g_c, g_g = framed(concept_signal=10.0)
    cav = one_fit().fit(concept, generic, g_c, g_g)
    assert cav.accuracy_ > 0.9


def test_group_folds_fall_back_to_rows_when_a_class_has_one_group():
    concept, generic, g_c, _ = framed(concept_signal=10.0)
    one_group = ["template:all"] * len(generic)
    cav = one_fit().fit(concept, generic, g_c, one_group)
    assert cav.result("c", 1).cv_unit == "sentence"
    with pytest.raises(ValueError, match="group labels"):
        ConceptActivationVector().fit(concept, generic, g_c[:5], one_group)
