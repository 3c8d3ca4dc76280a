"""BiasLens: bias as the asymmetric association of a target concept with two reference concepts.

Gao et al. 2025 ("Evaluate Bias without Manual Test Sets", arXiv 2505.15524) define
Bias(T; A, B) = Diff(Align(c_T, c_A), Align(c_T, c_B)) with Align = cosine similarity of concept
vectors. Ours (METHODS.md §1.5), per layer l::

    B_l = cos(c_T, c_A) - cos(c_T, c_B)                      (> 0: T sits closer to A)
    sample view: mean over target examples h of cos(h - o_l, c_A) - cos(h - o_l, c_B)

where c_X is concept X's CAV and o_l the generic mean (``space="sae"``: the same, with CAVs fitted over
a sparse autoencoder's latents at its layer, METHODS.md §1.4). The headline score averages B_l over the
layers where all three concepts are linearly readable (``readability >= 0.9``). Uncertainty:

* **bootstrap CI** over examples -- each replicate resamples the target's, A's and B's examples with
  replacement, refits the three CAVs (one logistic regression each, same preprocessing as the
  artefact's CAVs) and recomputes the score;
* **permutation p-value** -- A and B examples are pooled and randomly re-split (sizes kept), the two
  reference CAVs refitted; p = (1 + #{|score_perm| >= |score|}) / (1 + P), two-sided.

Replicates are cached per (concept, layer, replicate), so scoring ten occupations against the same
(male, female) pair refits male and female once per replicate, not ten times. The refits are the
expensive part (one logistic regression each); they run in ``n_jobs`` processes, one task per
(concept, layer), and every replicate draws from its own seeded generator, so the result does not
depend on ``n_jobs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from biasaudit.concepts.cav import CAVResult, ConceptActivationVector
from biasaudit.concepts.extract import ACCURACY_THRESHOLD, ConceptVectors, readability, vectors_from_activations
from biasaudit.errors import InvalidRequestError

if TYPE_CHECKING:
    from biasaudit.concepts.sae import LoadedSAE

SPACES = ("residual", "sae", "both")

# Below this many examples per concept a bootstrap interval is not worth printing.
MIN_EXAMPLES_FOR_CI = 10

Activations = Mapping[str, Mapping[int, np.ndarray]]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(_unit(a) @ _unit(b))


@dataclass(frozen=True)
class LayerScore:
    """One layer: the score, its two cosines, the sample-level view, and whether the layer counts."""

    layer: int
    score: float
    cos_a: float
    cos_b: float
    sample_score: float
    readable: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BiasLensResult:
    """Bias(target; A, B) with uncertainty. ``score`` is None when no layer has all three concepts
    readable; ``ci``/``p_value`` are None when there were too few examples (``note`` says why)."""

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
    n_bootstrap: int
    n_permutations: int
    note: str | None = None
    category: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # With space="both": the same triple scored in SAE-latent space (this one is the residual score).
    sae: BiasLensResult | None = None
    # Bootstrap replicate scores (not serialised): category scores average them replicate by replicate.
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("replicates")
        out["ci"] = list(self.ci) if self.ci else None
        out["sample_ci"] = list(self.sample_ci) if self.sample_ci else None
        out["layers"] = [x.to_dict() for x in self.layers]
        out["sae"] = self.sae.to_dict() if self.sae is not None else None
        return out

    def antisymmetric(self) -> BiasLensResult:
        """The same result with A and B swapped (every score changes sign)."""
        flip = [LayerScore(x.layer, -x.score, x.cos_b, x.cos_a, -x.sample_score, x.readable) for x in self.layers]
        neg = lambda ci: (-ci[1], -ci[0]) if ci else None  # noqa: E731
        return BiasLensResult(
            self.target, self.reference_b, self.reference_a, self.space,
            None if self.score is None else -self.score, neg(self.ci), self.p_value,
            None if self.sample_score is None else -self.sample_score, neg(self.sample_ci),
            self.aggregate_layers, flip, self.n_target, self.n_b, self.n_a, self.n_bootstrap,
            self.n_permutations, self.note, self.category, dict(self.extra),
            None if self.sae is None else self.sae.antisymmetric(),
            None if self.replicates is None else -self.replicates,
        )  # fmt: skip


class BiasLens:
    """Score Bias(target; A, B) from concept vectors and the activations they were fitted on.

    Parameters
    ----------
    threshold:
        Layers count towards the headline score only when target, A and B all reach it (BiasLens: 0.9).
    readable_by:
        What must reach ``threshold``: ``"generic"`` -- the CAV's held-out accuracy against generic
        text (the paper's rule, METHODS.md §1.5); ``"strict"`` -- also the accuracy against the other
        concepts of the group (``readability``), which template examples cannot inflate.
    layers:
        Restrict to these layers (default: every layer of the vectors).
    n_bootstrap, n_permutations:
        Replicates for the CI and the p-value (0 turns either off).
    confidence:
        CI level.
    seed:
        Seeds both resampling schemes.
    n_jobs:
        Processes for the replicate refits (joblib convention: -1 = all cores, None = 1).
    space:
        Where the concept vectors live: ``"residual"`` (CAVs on hidden states), ``"sae"`` (CAVs on the
        latents of a sparse autoencoder at its layer, METHODS.md §1.4) or ``"both"`` (the residual
        result, with the SAE one attached as ``result.sae``). The SAE spaces need ``fit(..., sae=...)``.

    ``fit(vectors, activations)`` takes the output of ``ConceptExtractor`` (``vectors_`` and
    ``activations_``; the latter must hold "generic"), then ``score(target, (A, B))`` returns a
    ``BiasLensResult``; call it for as many triples as you like (replicates are shared).
    """

    def __init__(
        self,
        *,
        threshold: float = ACCURACY_THRESHOLD,
        readable_by: str = "generic",
        layers: Sequence[int] | None = None,
        n_bootstrap: int = 200,
        n_permutations: int = 200,
        confidence: float = 0.95,
        seed: int = 0,
        n_jobs: int | None = None,
        space: str = "residual",
    ) -> None:
        self.threshold = threshold
        self.readable_by = readable_by
        self.layers = layers
        self.n_bootstrap = n_bootstrap
        self.n_permutations = n_permutations
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
        self._replicates: dict[tuple[str, int, str, int], np.ndarray] = {}
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
        latent_vectors = vectors_from_activations(latents, vectors.config, model=vectors.model)
        inner = BiasLens(
            threshold=self.threshold, readable_by=self.readable_by, n_bootstrap=self.n_bootstrap,
            n_permutations=self.n_permutations, confidence=self.confidence, seed=self.seed, n_jobs=self.n_jobs,
        )  # fmt: skip
        return inner.fit(latent_vectors, latents)

    # ------------------------------------------------------------------ CAV refits for resampling
    def _estimator(self) -> ConceptActivationVector:
        cfg = self.vectors_.config
        return ConceptActivationVector(C=cfg.C, n_folds=2, n_repeats=1, cv_repeats=0, subsample=1.0, random_state=0)

    def _task(self, kind: str, concepts: tuple[str, ...], layer: int) -> _RefitTask:
        X = tuple(np.asarray(self.activations_[c][layer]) for c in concepts)
        return _RefitTask(kind, concepts, layer, X, np.asarray(self.activations_["generic"][layer]))

    def _prefetch(self, tasks: list[_RefitTask], count: int) -> None:
        """Fill the replicate cache for ``count`` replicates of every task not cached yet."""
        todo = [task for task in tasks if task.key(count - 1) not in self._replicates]
        if not todo or count <= 0:
            return
        estimator, seed = self._estimator(), self.seed
        if self.n_jobs in (None, 1) or len(todo) == 1:
            batches = [task.run(estimator, seed, count) for task in todo]
        else:
            from joblib import Parallel, delayed

            batches = Parallel(n_jobs=self.n_jobs)(delayed(task.run)(estimator, seed, count) for task in todo)
        for batch in batches:
            self._replicates.update(batch)

    def _bootstrap_cav(self, concept: str, layer: int, b: int) -> np.ndarray:
        key = (concept, layer, "boot", b)
        if key not in self._replicates:
            self._prefetch([self._task("boot", (concept,), layer)], b + 1)
        return self._replicates[key]

    def _single(self, concept: str, layer: int) -> np.ndarray:
        key = (concept, layer, "single", 0)
        if key not in self._replicates:
            self._replicates[key] = self._refit(np.asarray(self.activations_[concept][layer]), layer)
        return self._replicates[key]

    def _refit(self, X: np.ndarray, layer: int) -> np.ndarray:
        generic = np.asarray(self.activations_["generic"][layer])
        return self._estimator().fit_direction(X, generic)

    def _permuted_cavs(self, a: str, b: str, layer: int, p: int) -> tuple[np.ndarray, np.ndarray]:
        key_a = (f"{a}|{b}", layer, "perm-a", p)
        if key_a not in self._replicates:
            self._prefetch([self._task("perm", (a, b), layer)], p + 1)
        return self._replicates[key_a], self._replicates[(f"{a}|{b}", layer, "perm-b", p)]

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
        per_layer = []
        for layer in self.layers_:
            c_t, c_a, c_b = (vec.vector(k, layer) for k in (t, a, b))
            readable = all(self._readability(vec.result(k, layer)) >= self.threshold for k in (t, a, b))
            H = np.asarray(self.activations_[t][layer]) - vec.offsets[layer]
            H = H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)
            sample = float((H @ _unit(c_a) - H @ _unit(c_b)).mean())
            cos_a, cos_b = _cos(c_t, c_a), _cos(c_t, c_b)
            per_layer.append(LayerScore(layer, cos_a - cos_b, cos_a, cos_b, sample, readable))
        use = [x.layer for x in per_layer if x.readable]
        n_t, n_a, n_b = (len(self.activations_[k][self.layers_[0]]) for k in (t, a, b))
        result = BiasLensResult(
            target=t, reference_a=a, reference_b=b, space="residual", score=None, ci=None, p_value=None,
            sample_score=None, sample_ci=None, aggregate_layers=use, layers=per_layer, n_target=n_t, n_a=n_a,
            n_b=n_b, n_bootstrap=self.n_bootstrap, n_permutations=self.n_permutations, category=category,
        )  # fmt: skip
        if not use:
            result.note = (
                f"no layer has {t}, {a} and {b} all readable (>= {self.threshold}); per-layer scores are "
                "reported, the aggregate is not"
            )
            return result
        chosen = [x for x in per_layer if x.readable]
        result.score = float(np.mean([x.score for x in chosen]))
        result.sample_score = float(np.mean([x.sample_score for x in chosen]))
        if min(n_t, n_a, n_b) < MIN_EXAMPLES_FOR_CI:
            result.note = f"too few examples for a CI or p-value (need >= {MIN_EXAMPLES_FOR_CI} per concept)"
            return result
        if self.n_bootstrap > 0:
            self._prefetch([self._task("boot", (k,), layer) for k in (t, a, b) for layer in use], self.n_bootstrap)
            result.replicates = self._bootstrap_scores(t, a, b, use)
            result.ci = self.interval(result.replicates)
            result.sample_ci = self._sample_ci(t, a, b, use)
        if self.n_permutations > 0:
            self._prefetch([self._task("perm", (a, b), layer) for layer in use], self.n_permutations)
            result.p_value = self._permutation_p(t, a, b, use)
        return result

    def _tail(self) -> tuple[float, float]:
        tail = (1.0 - self.confidence) / 2.0
        return tail, 1.0 - tail

    def interval(self, replicates: np.ndarray) -> tuple[float, float]:
        """Percentile interval of bootstrap replicate scores at ``confidence``."""
        low, high = np.quantile(replicates, self._tail())
        return float(low), float(high)

    def _bootstrap_scores(self, t: str, a: str, b: str, layers: list[int]) -> np.ndarray:
        stats = []
        for rep in range(self.n_bootstrap):
            values = []
            for layer in layers:
                c_t, c_a, c_b = (self._bootstrap_cav(k, layer, rep) for k in (t, a, b))
                values.append(_cos(c_t, c_a) - _cos(c_t, c_b))
            stats.append(np.mean(values))
        return np.asarray(stats)

    def _sample_ci(self, t: str, a: str, b: str, layers: list[int]) -> tuple[float, float]:
        """CI of the sample view: resample target examples (the reference CAVs held fixed)."""
        vec = self.vectors_
        per_example = []
        for layer in layers:
            H = np.asarray(self.activations_[t][layer]) - vec.offsets[layer]
            H = H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)
            per_example.append(H @ _unit(vec.vector(a, layer)) - H @ _unit(vec.vector(b, layer)))
        values = np.mean(per_example, axis=0)
        rng = np.random.default_rng([self.seed, 7])
        idx = rng.integers(0, len(values), size=(max(self.n_bootstrap, 1), len(values)))
        low, high = np.quantile(values[idx].mean(axis=1), self._tail())
        return float(low), float(high)

    def _permutation_p(self, t: str, a: str, b: str, layers: list[int]) -> float:
        """Two-sided permutation p-value. The observed statistic is recomputed with single-fit reference
        CAVs (as in every permutation), so observed and null come from the same estimator."""
        vec = self.vectors_
        observed = float(
            np.mean(
                [
                    _cos(vec.vector(t, layer), self._single(a, layer))
                    - _cos(vec.vector(t, layer), self._single(b, layer))
                    for layer in layers
                ]
            )
        )
        exceed = 0
        for p in range(self.n_permutations):
            values = []
            for layer in layers:
                c_a, c_b = self._permuted_cavs(a, b, layer, p)
                c_t = vec.vector(t, layer)
                values.append(_cos(c_t, c_a) - _cos(c_t, c_b))
            exceed += abs(float(np.mean(values))) >= abs(observed) - 1e-12
        return (1 + exceed) / (1 + self.n_permutations)


@dataclass(frozen=True)
class _RefitTask:
    """All replicates of one (concept, layer) bootstrap or one (A|B, layer) permutation: a picklable
    unit of work whose generators are seeded by (seed, replicate, concept names) alone."""

    kind: str  # "boot" (concepts = (c,)) or "perm" (concepts = (a, b))
    concepts: tuple[str, ...]
    layer: int
    X: tuple[np.ndarray, ...]
    generic: np.ndarray

    def key(self, replicate: int) -> tuple[str, int, str, int]:
        if self.kind == "boot":
            return (self.concepts[0], self.layer, "boot", replicate)
        return ("|".join(self.concepts), self.layer, "perm-a", replicate)

    def run(
        self, estimator: ConceptActivationVector, seed: int, count: int
    ) -> dict[tuple[str, int, str, int], np.ndarray]:
        out: dict[tuple[str, int, str, int], np.ndarray] = {}
        if self.kind == "boot":
            (concept,), (X,) = self.concepts, self.X
            for b in range(count):
                rng = np.random.default_rng([seed, b, _stable_hash(concept)])
                out[(concept, self.layer, "boot", b)] = estimator.fit_direction(
                    X[rng.integers(0, len(X), len(X))], self.generic
                )
            return out
        (a, b_name), (X_a, X_b) = self.concepts, self.X
        pooled = np.concatenate([X_a, X_b])
        for p in range(count):
            order = np.random.default_rng([seed, p, _stable_hash(a), _stable_hash(b_name)]).permutation(len(pooled))
            out[(f"{a}|{b_name}", self.layer, "perm-a", p)] = estimator.fit_direction(
                pooled[order[: len(X_a)]], self.generic
            )
            out[(f"{a}|{b_name}", self.layer, "perm-b", p)] = estimator.fit_direction(
                pooled[order[len(X_a) :]], self.generic
            )
        return out


def _stable_hash(text: str) -> int:
    """A seed component from a concept name that does not change between Python runs (``hash`` does)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
