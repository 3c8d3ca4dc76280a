"""Concept Activation Vectors: the direction that separates a concept's activations from generic text.

Kim et al. 2018 (TCAV) define a CAV as the normal of a linear classifier between concept examples and
random examples; Gao et al. 2025 (BiasLens, arXiv 2505.15524) fit one per layer on last-token hidden
states. Ours (docs/methods.md §1.3): L2 logistic regression, class-balanced, concept vs generic;
CAV = w / ||w||; k-fold held-out accuracy; R repeats, each against a fresh resample of the generic pool,
give the mean CAV and its stability (mean pairwise cosine of the R CAVs; 1 = the direction does not
depend on which generic text was drawn).

Held-out accuracy is cross-validated by *group* when the examples say where they came from (``groups``:
the template a sentence was built from, or the seed word, or the generation prompt): a fold holds out
whole templates, so the accuracy measures reading the concept from a sentence the classifier has not
seen the frame of, not recognising the template's other words. Row-level folds gave 1.0 at every layer
of the default model (template sentences differ from generic ones in their frames), so choosing
readable layers on them chose every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from biasaudit.errors import InvalidRequestError, TooFewExamplesError

MIN_EXAMPLES_PER_CLASS = 10


@dataclass(frozen=True)
class CAVResult:
    """A fitted CAV in JSON-friendly form (see ``ConceptActivationVector`` for the fields)."""

    concept: str
    layer: int
    accuracy: float
    accuracy_std: float
    stability: float
    n_concept: int
    n_generic: int
    # Held-out accuracy of this concept against the other concepts of its group (None for a group of
    # one). Template examples differ from generic text in sentence frame as well as concept, which
    # inflates ``accuracy``; concepts of one group share their frames, so this one measures the concept.
    within_group_accuracy: float | None = None
    # What a cross-validation fold held out: "group" (whole templates, seed words or generation prompts,
    # see ``group_labels``) or "sentence" (rows: examples without provenance, or too few groups).
    cv_unit: str = "sentence"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ConceptActivationVector:
    """One concept's CAV at one layer (scikit-learn estimator style).

    Parameters
    ----------
    C:
        Inverse L2 strength of the logistic regression. Activations are divided by the mean norm of
        the (centred) generic rows first, so ``C`` means the same at every layer and in every model
        (residual-stream norms grow by orders of magnitude with depth).
    n_folds:
        Folds for the held-out accuracy.
    n_repeats:
        Generic resamples (R); each gives one CAV.
    cv_repeats:
        How many of the repeats also run the k-fold accuracy (the rest only fit a direction; the
        accuracy barely moves between resamples, the fitting cost does).
    subsample:
        Fraction of the smaller class drawn (without replacement, from both classes) in each repeat;
        below 1, the R repeats see different generic text even when the pools are the same size.
    center:
        Subtract the mean of the generic activations before fitting, so the CAV describes the concept
        relative to ordinary text rather than the residual stream's large constant offset.
    random_state:
        Seed for resampling and fold assignment.

    Attributes (after ``fit``)
    --------------------------
    cav_: (d,) unit mean CAV.  cavs_: (R, d) unit CAV of each repeat.  accuracy_: mean held-out
    accuracy over folds and the first ``cv_repeats`` repeats; accuracy_std_: its std over those
    repeats.  stability_: mean pairwise cosine of ``cavs_`` (1.0 when R == 1).  intercept_: mean
    intercept.  offset_, scale_: the centring and scaling applied before fitting.  n_concept_,
    n_generic_.
    """

    def __init__(
        self,
        C: float = 0.1,
        n_folds: int = 5,
        n_repeats: int = 10,
        cv_repeats: int = 3,
        subsample: float = 0.8,
        center: bool = True,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.n_folds = n_folds
        self.n_repeats = n_repeats
        self.cv_repeats = cv_repeats
        self.subsample = subsample
        self.center = center
        self.random_state = random_state

    def _check(self, X_concept: np.ndarray, X_generic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X_c = np.asarray(X_concept, dtype=np.float64)
        X_g = np.asarray(X_generic, dtype=np.float64)
        if X_c.ndim != 2 or X_g.ndim != 2 or X_c.shape[1] != X_g.shape[1]:
            raise InvalidRequestError(f"activations must be 2-D with the same width, got {X_c.shape} and {X_g.shape}")
        if self.n_folds < 2 or self.n_repeats < 1:
            raise InvalidRequestError(f"need n_folds >= 2 and n_repeats >= 1, got {self.n_folds} and {self.n_repeats}")
        if not 0 < self.subsample <= 1:
            raise InvalidRequestError(f"subsample must be in (0, 1], got {self.subsample}")
        need = max(MIN_EXAMPLES_PER_CLASS, self.n_folds)
        for what, X in (("concept", X_c), ("generic", X_g)):
            if len(X) < need:
                raise TooFewExamplesError(
                    f"{len(X)} {what} examples is too few for a {self.n_folds}-fold CAV (need >= {need}); "
                    "add seed words/templates, generate more examples, or pass a larger corpus"
                )
        if not (np.isfinite(X_c).all() and np.isfinite(X_g).all()):
            raise InvalidRequestError("activations contain NaN or infinity")
        return X_c, X_g

    def fit(
        self,
        X_concept: np.ndarray,
        X_generic: np.ndarray,
        groups_concept: Sequence[str] | None = None,
        groups_generic: Sequence[str] | None = None,
    ) -> ConceptActivationVector:
        """Fit on concept activations (n_c, d) vs generic activations (n_g, d); returns self.

        ``groups_*``: one group label per row (``group_labels``); with them the held-out accuracy
        holds out whole groups (``held_out_accuracy``)."""
        X_c, X_g = self._check(X_concept, X_generic)
        g_c, g_g = _check_groups(groups_concept, len(X_c)), _check_groups(groups_generic, len(X_g))
        rng = np.random.default_rng(self.random_state)
        self.offset_ = X_g.mean(axis=0) if self.center else np.zeros(X_c.shape[1])
        self.scale_ = float(np.linalg.norm(X_g - self.offset_, axis=1).mean()) or 1.0
        n = max(self.n_folds, round(self.subsample * min(len(X_c), len(X_g))))
        cavs, intercepts, accuracies = [], [], []
        self.cv_unit_ = "sentence"
        for r in range(self.n_repeats):
            # Balanced classes by construction: n rows of each, drawn without replacement (no row can
            # sit on both sides of a fold split).
            g_idx = rng.choice(len(X_g), size=n, replace=False)
            c_idx = rng.choice(len(X_c), size=n, replace=False)
            X = (np.concatenate([X_c[c_idx], X_g[g_idx]]) - self.offset_) / self.scale_
            y = np.concatenate([np.ones(n), np.zeros(n)])
            if r < self.cv_repeats:
                groups = None if g_c is None or g_g is None else np.concatenate([g_c[c_idx], g_g[g_idx]])
                accuracy, self.cv_unit_ = held_out_accuracy(
                    X, y, C=self.C, n_folds=self.n_folds, seed=self.random_state + r, groups=groups
                )
                accuracies.append(accuracy)
            clf = _classifier(self.C).fit(X, y)
            w = clf.coef_[0]
            cavs.append(w / max(np.linalg.norm(w), 1e-12))
            intercepts.append(float(clf.intercept_[0]))
        self.cavs_ = np.stack(cavs)
        mean = self.cavs_.mean(axis=0)
        self.cav_ = mean / max(np.linalg.norm(mean), 1e-12)
        self.intercept_ = float(np.mean(intercepts))
        self.accuracy_ = float(np.mean(accuracies)) if accuracies else float("nan")
        self.accuracy_std_ = float(np.std(accuracies)) if accuracies else float("nan")
        self.stability_ = pairwise_stability(self.cavs_)
        self.n_concept_, self.n_generic_ = len(X_c), len(X_g)
        return self

    def fit_direction(self, X_concept: np.ndarray, X_generic: np.ndarray) -> np.ndarray:
        """One unit CAV from all rows (no resampling, no cross-validation): what bootstrap and
        permutation replicates refit. Same centring, scaling and regularisation as ``fit``."""
        X_c = np.asarray(X_concept, dtype=np.float64)
        X_g = np.asarray(X_generic, dtype=np.float64)
        offset = X_g.mean(axis=0) if self.center else np.zeros(X_c.shape[1])
        scale = float(np.linalg.norm(X_g - offset, axis=1).mean()) or 1.0
        X = (np.concatenate([X_c, X_g]) - offset) / scale
        y = np.concatenate([np.ones(len(X_c)), np.zeros(len(X_g))])
        w = _classifier(self.C).fit(X, y).coef_[0]
        return w / max(float(np.linalg.norm(w)), 1e-12)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Signed distance of each row (n, d) along the CAV: (X - offset) · cav."""
        return (np.asarray(X, dtype=np.float64) - self.offset_) @ self.cav_

    def result(self, concept: str, layer: int, within_group_accuracy: float | None = None) -> CAVResult:
        return CAVResult(
            concept,
            layer,
            self.accuracy_,
            self.accuracy_std_,
            self.stability_,
            self.n_concept_,
            self.n_generic_,
            within_group_accuracy,
            self.cv_unit_,
        )


def _classifier(C: float) -> LogisticRegression:
    # liblinear: 4x faster than lbfgs at these sizes (n of a few hundred, d of several hundred); it also
    # penalises the intercept, which is harmless on data centred on the generic mean.
    return LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=2000)


def _check_groups(groups: Sequence[str] | None, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    out = np.asarray(list(groups), dtype=object)
    if len(out) != n:
        raise InvalidRequestError(f"got {len(out)} group labels for {n} rows")
    return out


def held_out_accuracy(
    X: np.ndarray, y: np.ndarray, *, C: float, n_folds: int, seed: int, groups: np.ndarray | None = None
) -> tuple[float, str]:
    """k-fold accuracy of the L2 logistic regression on (X, y), and the unit the folds held out.

    With ``groups`` (one label per row) folds hold out whole groups (``StratifiedGroupKFold``), with as
    many folds as the class with the fewest groups allows (at most ``n_folds``); a class with a single
    group cannot be held out that way, and the folds fall back to rows ("sentence")."""
    if groups is not None:
        k = min(n_folds, *(len(set(groups[y == label])) for label in np.unique(y)))
        if k >= 2:
            folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            return _fold_accuracy(X, y, folds.split(X, y, groups), C), "group"
    folds_rows = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return _fold_accuracy(X, y, folds_rows.split(X, y), C), "sentence"


def _fold_accuracy(X: np.ndarray, y: np.ndarray, splits: Any, C: float) -> float:
    correct = 0
    for train, test in splits:
        clf = _classifier(C).fit(X[train], y[train])
        correct += int((clf.predict(X[test]) == y[test]).sum())
    return correct / len(y)


def contrast_accuracy(
    X_a: np.ndarray,
    X_b: np.ndarray,
    *,
    C: float = 0.1,
    n_folds: int = 5,
    seed: int = 0,
    groups_a: Sequence[str] | None = None,
    groups_b: Sequence[str] | None = None,
) -> float:
    """Held-out accuracy of telling rows of ``X_a`` from rows of ``X_b`` (balanced by subsampling the larger);
    with ``groups_*`` the folds hold out whole groups (see ``held_out_accuracy``).

    Scaled like ``ConceptActivationVector`` (centred on ``X_b``, divided by its mean norm) so ``C`` agrees.
    """
    rng = np.random.default_rng(seed)
    n = min(len(X_a), len(X_b))
    ia = rng.choice(len(X_a), size=n, replace=False)
    ib = rng.choice(len(X_b), size=n, replace=False)
    a = np.asarray(X_a, dtype=np.float64)[ia]
    b = np.asarray(X_b, dtype=np.float64)[ib]
    offset = b.mean(axis=0)
    scale = float(np.linalg.norm(b - offset, axis=1).mean()) or 1.0
    X = (np.concatenate([a, b]) - offset) / scale
    y = np.concatenate([np.ones(n), np.zeros(n)])
    g_a, g_b = _check_groups(groups_a, len(X_a)), _check_groups(groups_b, len(X_b))
    groups = None if g_a is None or g_b is None else np.concatenate([g_a[ia], g_b[ib]])
    return held_out_accuracy(X, y, C=C, n_folds=n_folds, seed=seed, groups=groups)[0]


def pairwise_stability(vectors: np.ndarray) -> float:
    """Mean cosine over distinct pairs of rows (1.0 for a single row)."""
    if len(vectors) < 2:
        return 1.0
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    iu = np.triu_indices(len(vectors), k=1)
    return float(sims[iu].mean())
