"""BiasLens scores on synthetic activations with a planted (or absent) association."""

from __future__ import annotations

import numpy as np
import pytest

from biasaudit.biaslens.score import BiasLens
from biasaudit.concepts.extract import ConceptExtractionConfig, vectors_from_activations
from biasaudit.errors import InvalidRequestError

D, N = 24, 60
CONFIG = ConceptExtractionConfig(groups=[], n_repeats=3, n_folds=3)


def synthetic(association: float, seed: int = 0, layers=(1, 2)):
    """Concepts A, B (a pair) and a target T whose direction leans towards A by ``association``.

    T's own direction is made orthogonal to A's and B's, so at ``association=0`` it is exactly as far
    from A as from B (a planted null) and only sampling noise is left."""
    rng = np.random.default_rng(seed)
    dirs = {name: rng.normal(size=D) for name in ("a", "b", "t")}
    basis, _ = np.linalg.qr(np.stack([dirs["a"], dirs["b"]], axis=1))
    dirs["t"] = dirs["t"] - basis @ (basis.T @ dirs["t"])
    dirs = {k: v / np.linalg.norm(v) for k, v in dirs.items()}
    t_dir = dirs["t"] + association * dirs["a"]
    acts: dict[str, dict[int, np.ndarray]] = {"generic": {}, "ref/a": {}, "ref/b": {}, "tgt/t": {}}
    for layer in layers:
        acts["generic"][layer] = rng.normal(size=(N, D))
        acts["ref/a"][layer] = rng.normal(size=(N, D)) + 2.5 * dirs["a"]
        acts["ref/b"][layer] = rng.normal(size=(N, D)) + 2.5 * dirs["b"]
        acts["tgt/t"][layer] = rng.normal(size=(N, D)) + 2.5 * t_dir / np.linalg.norm(t_dir)
    return acts


def lens_for(acts, sae=None, **kw):
    vectors = vectors_from_activations(acts, CONFIG)
    kw.setdefault("n_splits", 30)
    return BiasLens(threshold=0.6, **kw).fit(vectors, acts, sae=sae)


def test_planted_association_is_significant_with_the_right_sign():
    acts = synthetic(association=1.5)
    result = lens_for(acts).score("t", ("a", "b"))
    assert result.aggregate_layers == [1, 2]
    assert result.score is not None and result.score > 0.2
    assert result.ci is not None and result.ci[0] > 0
    assert result.sample_score is not None and result.sample_score > 0
    assert result.sample_ci is not None and result.sample_ci[0] > 0
    assert result.p_value is not None and result.p_value < 0.05
    # Per-layer raw score is exactly the difference of the two cosines; the corrected one is larger
    # (reliabilities < 1 pull the raw score towards 0) and so is the corrected aggregate.
    for layer in result.layers:
        assert layer.raw_score == pytest.approx(layer.cos_a - layer.cos_b)
        assert layer.score is not None and layer.score > layer.raw_score > 0
    assert result.score == pytest.approx(np.mean([x.score for x in result.layers]))
    assert result.raw_score is not None and 0 < result.raw_score < result.score
    assert set(result.reliability) == {"tgt/t", "ref/a", "ref/b"}
    assert all(0 < r < 1 for r in result.reliability.values())


def test_swapping_the_references_flips_every_number_exactly():
    """Splits are seeded per concept, not per ordered pair: (B, A) is (A, B) with every sign flipped,
    the same standard error and the same p-value."""
    acts = synthetic(association=1.0)
    lens = lens_for(acts)
    ab, ba = lens.score("t", ("a", "b")), lens.score("t", ("b", "a"))
    assert ab.score == -ba.score and ab.raw_score == -ba.raw_score and ab.sample_score == -ba.sample_score
    assert ab.se == ba.se and ab.p_value == ba.p_value
    assert ab.ci == (-ba.ci[1], -ba.ci[0]) and ab.sample_ci == (-ba.sample_ci[1], -ba.sample_ci[0])
    for x, y in zip(ab.layers, ba.layers, strict=True):
        assert x.score == -y.score and x.raw_score == -y.raw_score and x.se == y.se
    np.testing.assert_array_equal(ab.halves, -ba.halves)
    flipped = ab.antisymmetric()
    assert flipped.reference_a == "ref/b"
    assert flipped.to_dict() == ba.to_dict()


def test_half_sample_interval_known_answer():
    from scipy.stats import norm

    from biasaudit.biaslens.score import half_sample_interval

    halves = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # differences 1, -2, 0
    se, ci, p = half_sample_interval(0.5, halves)
    assert se == pytest.approx(np.sqrt((1 + 4 + 0) / 3 / 4))
    assert ci == pytest.approx((0.5 - norm.ppf(0.975) * se, 0.5 + norm.ppf(0.975) * se))
    assert p == pytest.approx(2 * norm.sf(0.5 / se))
    assert half_sample_interval(0.0, np.ones((4, 2)))[2] is None  # no spread: no p-value


def test_planted_null_is_rarely_significant():
    p_values = []
    for seed in range(8):
        result = lens_for(synthetic(association=0.0, seed=seed), n_splits=20).score("t", ("a", "b"))
        p_values.append(result.p_value)
    # Under the null p-values are roughly uniform: most exceed 0.05 (size is checked in tests/stats).
    assert sum(p > 0.05 for p in p_values) >= 6


def test_unreadable_layers_and_bad_requests():
    acts = synthetic(association=1.0)
    vectors = vectors_from_activations(acts, CONFIG)
    strict = BiasLens(threshold=1.01, n_splits=0).fit(vectors, acts)
    result = strict.score("t", ("a", "b"))
    assert result.score is None and result.aggregate_layers == [] and "readable" in result.note
    assert len(result.layers) == 2  # per-layer scores are still reported
    lens = BiasLens(n_splits=0).fit(vectors, acts)
    with pytest.raises(InvalidRequestError, match="three different"):
        lens.score("t", ("a", "a"))
    with pytest.raises(InvalidRequestError, match="no concept"):
        lens.score("nurse", ("a", "b"))
    with pytest.raises(InvalidRequestError, match="layers"):
        BiasLens(layers=[7]).fit(vectors, acts)
    with pytest.raises(InvalidRequestError, match="generic"):
        BiasLens().fit(vectors, {k: v for k, v in acts.items() if k != "generic"})
    with pytest.raises(InvalidRequestError, match="readable_by"):
        BiasLens(readable_by="sometimes").fit(vectors, acts)
    with pytest.raises(InvalidRequestError, match="n_splits"):
        BiasLens(n_splits=-1).fit(vectors, acts)


def test_too_few_examples_gives_a_note_not_a_ci():
    acts = synthetic(association=1.0)
    vectors = vectors_from_activations(acts, CONFIG)
    few = {k: ({layer: x[:8] for layer, x in v.items()} if k == "tgt/t" else v) for k, v in acts.items()}
    result = BiasLens(threshold=0.0).fit(vectors, few).score("t", ("a", "b"))
    assert result.score is not None and result.ci is None and result.p_value is None
    assert result.score == result.raw_score and "too few" in result.note and "not corrected" in result.note


def test_parallel_refits_give_identical_results():
    """Halves are seeded per (split, concept): n_jobs changes the speed, never the numbers."""
    acts = synthetic(association=1.0)
    serial = lens_for(acts, n_splits=10).score("t", ("a", "b"))
    parallel = lens_for(acts, n_splits=10, n_jobs=2).score("t", ("a", "b"))
    assert parallel.to_dict() == serial.to_dict()
    np.testing.assert_array_equal(parallel.halves, serial.halves)


class ModelShape:
    """What ``load_sae`` checks of a backend."""

    name, hidden_size, n_layers = "synthetic", D, 2


def split_sign_sae(tmp_path):
    from conftest import save_split_sign_sae

    from biasaudit.concepts.sae import load_sae

    return load_sae(save_split_sign_sae(tmp_path / "split_sign", D, layer=1), backend=ModelShape())


def test_sae_space_recovers_the_planted_association(tmp_path):
    sae = split_sign_sae(tmp_path)
    acts = synthetic(association=1.5)
    in_sae = lens_for(acts, sae, space="sae")
    result = in_sae.score("t", ("a", "b"))
    assert result.space == "sae" and [x.layer for x in result.layers] == [sae.layer]
    assert result.score is not None and result.score > 0.1
    assert result.ci is not None and result.ci[0] > 0 and result.p_value < 0.05
    flipped = in_sae.score("t", ("b", "a"))
    assert flipped.score == pytest.approx(-result.score)

    both = lens_for(acts, sae, space="both")
    combined = both.score("t", ("a", "b"))
    assert combined.space == "residual" and combined.aggregate_layers == [1, 2]
    assert combined.sae is not None and combined.sae.score == result.score and combined.sae.ci == result.ci
    assert combined.to_dict()["sae"]["space"] == "sae"


def test_sae_space_needs_an_sae_at_an_extracted_layer(tmp_path):
    acts = synthetic(association=1.0, layers=(2,))
    vectors = vectors_from_activations(acts, CONFIG)
    with pytest.raises(InvalidRequestError, match="needs a sparse autoencoder"):
        BiasLens(space="sae").fit(vectors, acts)
    with pytest.raises(InvalidRequestError, match="space must be one of"):
        BiasLens(space="latent").fit(vectors, acts)
    with pytest.raises(InvalidRequestError, match="no activations there"):
        BiasLens(space="both").fit(vectors, acts, sae=split_sign_sae(tmp_path))


def test_a_cav_fitted_on_noise_gets_no_corrected_score():
    """A target with no signal has a split-half cosine near 0: correcting by 1/r would amplify noise."""
    acts = synthetic(association=1.0)
    rng = np.random.default_rng(3)
    acts["tgt/t"] = {layer: rng.normal(size=(N, D)) for layer in acts["tgt/t"]}
    result = (
        BiasLens(threshold=0.0, n_splits=10).fit(vectors_from_activations(acts, CONFIG), acts).score("t", ("a", "b"))
    )
    assert result.score is None and result.ci is None and result.raw_score is not None
    assert "too unstable" in result.note and "tgt/t" in result.note
