"""BiasLens: bias as the asymmetric association of a target concept with two reference concepts.

Gao et al. 2025 ("Evaluate Bias without Manual Test Sets", arXiv 2505.15524) define
Bias(T; A, B) = Diff(Align(c_T, c_A), Align(c_T, c_B)) with Align = cosine similarity of concept
vectors. Ours (docs/methods.md, BiasLens), per layer l::

    B_l = cos(c_T, c_A) - cos(c_T, c_B)                      (> 0: T sits closer to A)
    sample view: mean over target examples h of cos(h - o_l, c_A) - cos(h - o_l, c_B)

where c_X is concept X's CAV (one logistic regression on all of X's examples against the generic pool)
and o_l the generic mean (``space="sae"``: the same, with CAVs fitted over a sparse autoencoder's
latents at its layer). The headline score averages B_l over the layers where all three concepts are
linearly readable (``readability >= 0.9``).

**Attenuation.** A CAV fitted on n examples is its population direction plus estimation noise; in high
dimension that noise is nearly orthogonal to everything, so a cosine of two fitted CAVs is the
population cosine times sqrt(r_X r_Y), where r_X = cos^2(fitted c_X, population c_X) is CAV X's
*reliability* -- every raw score is pulled towards 0, more so at small n and large d. We divide each
cosine by sqrt(r_X r_Y) (Spearman's 1904 correction for attenuation), with r_X estimated by split
halves: fit X's CAV on two disjoint halves of its examples (each against its own half of the generic
pool), r_half = mean cosine of the two fits over random splits, and step it up to the full sample with
the Spearman-Brown formula r = 2 r_half / (1 + r_half) (noise variance halves when n doubles). The sample
view is attenuated by sqrt(r_A), sqrt(r_B) and corrected the same way.

**Uncertainty: random half-samples.** The same splits give the interval. Each split s yields two
independent half-sample estimates (T's, A's, B's and the generic examples all halved; CAVs refitted;
halves corrected with r_half); as an estimate's variance scales with 1/n, Var(score) ~= E[(h1 - h2)^2]/4
(half-sample replication, McCarthy 1969). CI = score +- z se; two-sided p = 2 (1 - Phi(|score| / se)), so
p < 0.05 exactly when the 95% interval excludes 0. Every split's halves are seeded by (seed, split,
concept name) -- the generic halves by (seed, split) alone -- so the references' refits are shared by
every target they are scored against, a category mean is computed split by split (an interval for the
category, not a mean of intervals), and swapping A and B flips every number exactly.

Checked by simulation (tests/stats/test_biaslens_intervals.py): coverage of the population score,
size under a planted null, power; figures in docs/methods.md. The earlier bootstrap CI (point estimate
and replicates from different estimators, generic pool never resampled, no attenuation correction)
covered a population score of 0.30 about half the time, and the permutation test (target CAV held
fixed while A and B were re-split) rejected a true null in 13% of datasets at alpha = 0.05.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import norm

from biasaudit.concepts.cav import CAVResult, ConceptActivationVector
from biasaudit.concepts.extract import ACCURACY_THRESHOLD, ConceptVectors, readability, vectors_from_activations
from biasaudit.errors import InvalidRequestError

if TYPE_CHECKING:
    from biasaudit.concepts.sae import LoadedSAE

SPACES = ("residual", "sae", "both")

# Below this many examples per concept a half (half the examples) is too small to refit a CAV on.
MIN_EXAMPLES_FOR_CI = 10
# Below this split-half cosine a CAV is mostly noise and the correction (up to 1/r) would amplify it.
MIN_HALF_RELIABILITY = 0.2

Activations = Mapping[str, Mapping[int, np.ndarray]]
# Cached unit CAVs: (concept, layer, split, half) -> (d,); split -1 is the full-sample fit.
_FitKey = tuple[str, int, int, int]
_FULL = -1
_GENERIC_SALT = 0x6E6E


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(_unit(a) @ _unit(b))


def _unit_rows(H: np.ndarray) -> np.ndarray:
    return H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)


def spearman_brown(r_half: float) -> float:
    """Reliability of a CAV fitted on twice the examples of one whose split-half cosine is ``r_half``."""
    return 2.0 * r_half / (1.0 + r_half)


def half_sample_interval(
    estimate: float, halves: np.ndarray, confidence: float = 0.95
) -> tuple[float, tuple[float, float], float | None]:
    """(se, CI, two-sided p) of ``estimate`` from half-sample pairs.

    halves: (n_splits, 2) -- the estimate recomputed on the two disjoint halves of each random split.
    Var(estimate) = mean over splits of (h1 - h2)^2 / 4 (each half has twice the variance; the two are
    independent). Normal interval ``estimate +- z se``; p = 2 (1 - Phi(|estimate| / se)), None when se = 0.
    """
    halves = np.asarray(halves, dtype=np.float64)
    se = float(np.sqrt(np.mean((halves[:, 0] - halves[:, 1]) ** 2) / 4.0))
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = float(2.0 * norm.sf(abs(estimate) / se)) if se > 0 else None
    return se, (estimate - z * se, estimate + z * se), p


@dataclass(frozen=True)
class LayerScore:
    """One layer: the raw cosines and their difference; at the aggregate layers also the
    attenuation-corrected score (``score``) and sample view, each with its standard error."""

    layer: int
    raw_score: float
    cos_a: float
    cos_b: float
    readable: bool
    score: float | None = None
    se: float | None = None
    sample_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def antisymmetric(self) -> LayerScore:
        neg = lambda x: None if x is None else -x  # noqa: E731
        return LayerScore(
            self.layer, -self.raw_score, self.cos_b, self.cos_a, self.readable, neg(self.score), self.se,
            neg(self.sample_score),
        )  # fmt: skip


@dataclass
class BiasLensResult:
    """Bias(target; A, B) with uncertainty. ``score`` is None when no layer has all three concepts
    readable (or a CAV is too unstable to correct); ``ci``/``p_value`` are None when there were too few
    examples (``note`` says why). ``raw_score`` is the uncorrected mean cosine difference."""

    target: str
    reference_a: str
    reference_b: str
    space: str
    score: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    sample_score: float | None
    sample_ci: tuple[float, float] | None
    aggregate_layers: list[int]
    layers: list[LayerScore]
    n_target: int
    n_a: int
    n_b: int
    n_splits: int
    raw_score: float | None = None
    se: float | None = None
    # Full-sample reliability of each CAV (squared cosine with its population direction, estimated),
    # averaged over the aggregate layers.
    reliability: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    category: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # With space="both": the same triple scored in SAE-latent space (this one is the residual score).
    sae: BiasLensResult | None = None
    # Half-sample estimates (n_splits, 2), not serialised: a category mean is computed split by split.
    halves: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("halves")
        out["ci"] = list(self.ci) if self.ci else None
        out["sample_ci"] = list(self.sample_ci) if self.sample_ci else None
        out["layers"] = [x.to_dict() for x in self.layers]
        out["sae"] = self.sae.to_dict() if self.sae is not None else None
        return out

    def antisymmetric(self) -> BiasLensResult:
        """The same result with A and B swapped (every score changes sign; se and p stay)."""
        neg = lambda x: None if x is None else -x  # noqa: E731
        neg_ci = lambda ci: (-ci[1], -ci[0]) if ci else None  # noqa: E731
        return BiasLensResult(
            self.target, self.reference_b, self.reference_a, self.space, neg(self.score), neg_ci(self.ci),
            self.p_value, neg(self.sample_score), neg_ci(self.sample_ci), self.aggregate_layers,
            [x.antisymmetric() for x in self.layers], self.n_target, self.n_b, self.n_a, self.n_splits,
            neg(self.raw_score), self.se, dict(self.reliability), self.note, self.category, dict(self.extra),
            None if self.sae is None else self.sae.antisymmetric(),
            None if self.halves is None else -self.halves,
        )  # fmt: skip


class BiasLens:
    """Score Bias(target; A, B) from concept vectors and the activations they were fitted on.

    Parameters
    ----------
    threshold:
        Layers count towards the headline score only when target, A and B all reach it (BiasLens: 0.9).
    readable_by:
        What must reach ``threshold``: ``"generic"`` -- the CAV's held-out accuracy against generic
        text (the paper's rule; held out by template or seed word, see ``ConceptActivationVector``);
        ``"strict"`` -- also the accuracy against the other concepts of the group (``readability``).
    layers:
        Restrict to these layers (default: every layer of the vectors).
    n_splits:
        Random half-splits for the reliabilities, the CI and the p-value (0: point estimate only, and
        no attenuation correction -- the score is then the raw one).
    confidence:
        CI level.
    seed:
        Seeds the splits.
    n_jobs:
        Processes for the refits (joblib convention: -1 = all cores, None = 1).
    space:
        Where the concept vectors live: ``"residual"`` (CAVs on hidden states), ``"sae"`` (CAVs on the
        latents of a sparse autoencoder at its layer) or ``"both"`` (the residual result, with the SAE
        one attached as ``result.sae``). The SAE spaces need ``fit(..., sae=...)``.

    ``fit(vectors, activations)`` takes the output of ``ConceptExtractor`` (``vectors_`` -- for the
    readability of each concept and layer, and the CAV settings -- and ``activations_``, which must hold
    "generic"), then ``score(target, (A, B))`` returns a ``BiasLensResult``; call it for as many triples
    as you like (refits are shared).
    """

    def __init__(
        self,
        *,
        threshold: float = ACCURACY_THRESHOLD,
        readable_by: str = "generic",
        layers: Sequence[int] | None = None,
        n_splits: int = 50,
        confidence: float = 0.95,
        seed: int = 0,
        n_jobs: int | None = None,
        space: str = "residual",
    ) -> None:
        self.threshold = threshold
        self.readable_by = readable_by
        self.layers = layers
        self.n_splits = n_splits
        self.confidence = confidence
        self.seed = seed
        self.n_jobs = n_jobs
        self.space = space

    def fit(self, vectors: ConceptVectors, activations: Activations, sae: LoadedSAE | None = None) -> BiasLens:
        """Keep the vectors and activations; with an SAE, also encode every concept's activations at the
        SAE's layer and fit CAVs over the latents (same estimator and settings as ``vectors``)."""
        if self.readable_by not in ("generic", "strict"):
            raise InvalidRequestError(f"readable_by must be 'generic' or 'strict', not {self.readable_by!r}")
        if self.space not in SPACES:
            raise InvalidRequestError(f"space must be one of {SPACES}, not {self.space!r}")
        if self.n_splits < 0:
            raise InvalidRequestError(f"n_splits must be >= 0, got {self.n_splits}")
        if self.space != "residual" and sae is None:
            raise InvalidRequestError(
                f"space={self.space!r} needs a sparse autoencoder: fit(vectors, activations, sae=load_sae(...))"
            )
        if "generic" not in activations:
            raise InvalidRequestError("activations must include the 'generic' pool the CAVs were fitted against")
        self.vectors_ = vectors
        self.activations_ = activations
        self.layers_ = sorted(self.layers if self.layers is not None else vectors.layers)
        missing = sorted(set(self.layers_) - set(vectors.layers))
        if missing:
            raise InvalidRequestError(f"no CAVs at layers {missing}; fitted layers: {vectors.layers}")
        self._fits: dict[_FitKey, np.ndarray] = {}
        self.sae_lens_: BiasLens | None = None
        if self.space != "residual":
            assert sae is not None
            self.sae_lens_ = self._fit_sae_space(vectors, activations, sae)
        return self

    def _fit_sae_space(self, vectors: ConceptVectors, activations: Activations, sae: LoadedSAE) -> BiasLens:
        from biasaudit.concepts.sae import encode

        missing = [k for k, per_layer in activations.items() if sae.layer not in per_layer]
        if missing:
            raise InvalidRequestError(
                f"the SAE reads layer {sae.layer}, but there are no activations there for {missing[:5]}; "
                f"extract concepts at layer {sae.layer} too"
            )
        latents = {
            k: {sae.layer: encode(sae, np.asarray(per_layer[sae.layer]))} for k, per_layer in activations.items()
        }
        latent_vectors = vectors_from_activations(
            latents, vectors.config, model=vectors.model, examples=vectors.examples or None
        )
        inner = BiasLens(
            threshold=self.threshold, readable_by=self.readable_by, n_splits=self.n_splits,
            confidence=self.confidence, seed=self.seed, n_jobs=self.n_jobs,
        )  # fmt: skip
        return inner.fit(latent_vectors, latents)

    # ------------------------------------------------------------------ CAV refits
    def _estimator(self) -> ConceptActivationVector:
        cfg = self.vectors_.config
        return ConceptActivationVector(C=cfg.C, n_folds=2, n_repeats=1, cv_repeats=0, subsample=1.0, random_state=0)

    def _fit_all(self, concepts: Sequence[str], layers: Sequence[int]) -> None:
        """Fill the cache with every (concept, layer)'s full-sample and half-sample CAVs not cached yet."""
        todo = [(c, layer) for c in concepts for layer in layers if (c, layer, _FULL, 0) not in self._fits]
        if not todo:
            return
        tasks = [
            _RefitTask(
                c, layer, np.asarray(self.activations_[c][layer]), np.asarray(self.activations_["generic"][layer])
            )
            for c, layer in todo
        ]
        estimator, seed, n_splits = self._estimator(), self.seed, self.n_splits
        if self.n_jobs in (None, 1) or len(tasks) == 1:
            batches = [task.run(estimator, seed, n_splits) for task in tasks]
        else:
            from joblib import Parallel, delayed

            batches = Parallel(n_jobs=self.n_jobs)(delayed(task.run)(estimator, seed, n_splits) for task in tasks)
        for batch in batches:
            self._fits.update(batch)

    def _cav(self, concept: str, layer: int, split: int = _FULL, half: int = 0) -> np.ndarray:
        return self._fits[(concept, layer, split, half)]

    def _half_reliability(self, concept: str, layer: int) -> float:
        """Mean cosine of the two half-sample CAVs over the splits (the split-half reliability)."""
        return float(
            np.mean(
                [_cos(self._cav(concept, layer, s, 0), self._cav(concept, layer, s, 1)) for s in range(self.n_splits)]
            )
        )

    def _readability(self, result: CAVResult) -> float:
        return readability(result) if self.readable_by == "strict" else result.accuracy

    # ------------------------------------------------------------------ scoring
    def score(self, target: str, references: tuple[str, str], *, category: str | None = None) -> BiasLensResult:
        """Bias(target; A, B); concept names as in the vectors ("group/name", or "name" if unique)."""
        if self.space == "residual":
            return self._score(target, references, category)
        assert self.sae_lens_ is not None
        in_sae = self.sae_lens_._score(target, references, category)
        in_sae.space = "sae"
        if self.space == "sae":
            return in_sae
        result = self._score(target, references, category)
        result.sae = in_sae
        return result

    def _score(self, target: str, references: tuple[str, str], category: str | None) -> BiasLensResult:
        vec = self.vectors_
        if len(references) != 2:
            raise InvalidRequestError(f"references must be a pair (A, B), got {references!r}")
        t, a, b = (vec._key(c) for c in (target, *references))
        if len({t, a, b}) < 3:
            raise InvalidRequestError(f"target and references must be three different concepts, got {(t, a, b)}")
        for key in (t, a, b):
            if key not in self.activations_:
                raise InvalidRequestError(f"no activations for {key}; pass the extractor's activations_")
        self._fit_all((t, a, b), self.layers_)
        per_layer = []
        for layer in self.layers_:
            c_t, c_a, c_b = (self._cav(k, layer) for k in (t, a, b))
            readable = all(self._readability(vec.result(k, layer)) >= self.threshold for k in (t, a, b))
            cos_a, cos_b = _cos(c_t, c_a), _cos(c_t, c_b)
            per_layer.append(LayerScore(layer, cos_a - cos_b, cos_a, cos_b, readable))
        use = [x.layer for x in per_layer if x.readable]
        n_t, n_a, n_b = (len(self.activations_[k][self.layers_[0]]) for k in (t, a, b))
        result = BiasLensResult(
            target=t, reference_a=a, reference_b=b, space="residual", score=None, ci=None, p_value=None,
            sample_score=None, sample_ci=None, aggregate_layers=use, layers=per_layer, n_target=n_t, n_a=n_a,
            n_b=n_b, n_splits=self.n_splits, category=category,
        )  # fmt: skip
        if not use:
            result.note = (
                f"no layer has {t}, {a} and {b} all readable (>= {self.threshold}); per-layer scores are "
                "reported, the aggregate is not"
            )
            return result
        result.raw_score = float(np.mean([x.raw_score for x in per_layer if x.readable]))
        if self.n_splits == 0:
            result.score = result.raw_score
            result.note = "n_splits=0: raw score, not corrected for attenuation, no CI"
            return result
        if min(n_t, n_a, n_b) < MIN_EXAMPLES_FOR_CI:
            result.note = (
                f"too few examples to split in halves (need >= {MIN_EXAMPLES_FOR_CI} per concept): raw score, "
                "not corrected for attenuation, no CI or p-value"
            )
            result.score = result.raw_score
            return result
        half_rel = {(k, layer): self._half_reliability(k, layer) for k in (t, a, b) for layer in use}
        unstable = sorted({k for (k, _), r in half_rel.items() if r < MIN_HALF_RELIABILITY})
        if unstable:
            result.note = (
                f"CAVs too unstable to correct for attenuation (split-half cosine < {MIN_HALF_RELIABILITY}): "
                f"{unstable}; add examples; raw score only"
            )
            return result
        full_rel = {key: spearman_brown(r) for key, r in half_rel.items()}
        result.reliability = {k: float(np.mean([full_rel[(k, layer)] for layer in use])) for k in (t, a, b)}

        point = _Scorer(self, t, a, b, full_rel)
        halves_of = _Scorer(self, t, a, b, half_rel)
        # Per aggregate layer: corrected score and sample view (full sample), and their half-sample pairs.
        layer_est = {layer: point.layer(layer, _FULL, 0) for layer in use}
        layer_halves = {
            layer: np.array([[halves_of.layer(layer, s, j) for j in (0, 1)] for s in range(self.n_splits)])
            for layer in use
        }  # (n_splits, 2, 2): split, half, (score, sample view)
        est = np.mean([layer_est[layer] for layer in use], axis=0)
        halves = np.mean([layer_halves[layer] for layer in use], axis=0)
        result.score, result.sample_score = float(est[0]), float(est[1])
        result.halves = halves[:, :, 0]
        result.se, result.ci, result.p_value = half_sample_interval(result.score, result.halves, self.confidence)
        _, result.sample_ci, _ = half_sample_interval(result.sample_score, halves[:, :, 1], self.confidence)
        result.layers = [
            replace(
                x,
                score=float(layer_est[x.layer][0]),
                se=half_sample_interval(float(layer_est[x.layer][0]), layer_halves[x.layer][:, :, 0])[0],
                sample_score=float(layer_est[x.layer][1]),
            )
            if x.readable
            else x
            for x in per_layer
        ]
        return result


class _Scorer:
    """The corrected score and sample view of one (T, A, B) at one layer, on the full sample or on one
    half of a split, with the reliabilities that match that sample size."""

    def __init__(self, lens: BiasLens, t: str, a: str, b: str, reliability: Mapping[tuple[str, int], float]):
        self.lens, self.t, self.a, self.b, self.reliability = lens, t, a, b, reliability

    def layer(self, layer: int, split: int, half: int) -> tuple[float, float]:
        lens, t, a, b = self.lens, self.t, self.a, self.b
        r_t, r_a, r_b = (self.reliability[(k, layer)] for k in (t, a, b))
        c_t, c_a, c_b = (lens._cav(k, layer, split, half) for k in (t, a, b))
        score = _cos(c_t, c_a) / np.sqrt(r_t * r_a) - _cos(c_t, c_b) / np.sqrt(r_t * r_b)
        H = np.asarray(lens.activations_[t][layer], dtype=np.float64)
        G = np.asarray(lens.activations_["generic"][layer], dtype=np.float64)
        if split != _FULL:
            H = H[_halves(len(H), lens.seed, split, t)[half]]
            G = G[_halves(len(G), lens.seed, split, None)[half]]
        H = _unit_rows(H - G.mean(axis=0))
        sample = float((H @ _unit(c_a)).mean() / np.sqrt(r_a) - (H @ _unit(c_b)).mean() / np.sqrt(r_b))
        return float(score), sample


def _halves(n: int, seed: int, split: int, concept: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The two halves of ``n`` rows in split ``split``: seeded by the concept name (None: the generic
    pool, shared by every concept so that CAVs fitted against it keep their shared noise)."""
    salt = _GENERIC_SALT if concept is None else _stable_hash(concept)
    order = np.random.default_rng([seed, split, salt]).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


@dataclass(frozen=True)
class _RefitTask:
    """Every CAV of one (concept, layer): the full-sample fit and both halves of each split. Picklable;
    its halves depend on (seed, split, concept name) alone, so results do not depend on ``n_jobs``."""

    concept: str
    layer: int
    X: np.ndarray
    generic: np.ndarray

    def run(self, estimator: ConceptActivationVector, seed: int, n_splits: int) -> dict[_FitKey, np.ndarray]:
        out = {(self.concept, self.layer, _FULL, 0): estimator.fit_direction(self.X, self.generic)}
        for s in range(n_splits):
            x_halves = _halves(len(self.X), seed, s, self.concept)
            g_halves = _halves(len(self.generic), seed, s, None)
            for j in (0, 1):
                out[(self.concept, self.layer, s, j)] = estimator.fit_direction(
                    self.X[x_halves[j]], self.generic[g_halves[j]]
                )
        return out


def _stable_hash(text: str) -> int:
    """A seed component from a concept name that does not change between Python runs (``hash`` does)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
