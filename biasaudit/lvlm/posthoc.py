"""Post-hoc debiasing of an LVLM's answer distribution (METHODS.md §5).

Zhang et al. 2024, "Debiasing Multimodal Large Language Models" (arXiv 2403.05262, code yfzhang114/LLaVA-Align):
an LVLM's answer leans on its language prior as much as on the image. The prior is read off the same model with
the image taken away -- no image (``none``), a blank or ``unk`` image, or a noise image (``noise``) -- and divided
out of the real answer distribution over the K answer labels,

    p_cal  ∝  diag(p_ref)^-1 p                                  (the paper's post-hoc debias rule)

where p is the label distribution with the real image and p_ref the reference one, both renormalised over the
labels. Several references are combined by summing their label distributions and renormalising. ``per_question``
mode (the paper's) uses each question's own reference; ``dataset`` mode divides by the reference averaged over a
set of questions, a single prior ``prior_`` (K,) that can ship with a prompt, as ICL calibration's does
(``biasaudit.calibration.base``).

The reference probabilities themselves come from a backend (the image-less prompts); this module only does the
arithmetic, so it is exact and cheap to test.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from biasaudit import __version__
from biasaudit.calibration.base import NotFittedError

REFERENCES: tuple[str, ...] = ("none", "blank", "noise", "unk")
"""Reference inputs of the paper: no image, a blank image, a noise image, an ``unk`` (placeholder) image."""

MODES: tuple[str, ...] = ("per_question", "dataset")

PROB_FLOOR = float(np.finfo(np.float64).tiny)
"""Smallest reference probability divided by. A label the reference gives probability 0 would make p / p_ref
infinite (and 0/0 a NaN where p is 0 too); flooring keeps the rule's limit -- such a label wins whenever the
real image gives it any mass -- while every output stays a finite distribution. The floor is the smallest
normal float, not a "small" number like 1e-12: a strong language prior leaves the other labels reference
probabilities far below 1e-12 (e^-40 is common), and a coarser floor would silently undo the division."""

_METHOD = "lvlm_posthoc_debias"


def label_distribution(probs: np.ndarray, *, log_probs: bool = False, what: str = "probs") -> np.ndarray:
    """Rows of ``probs`` (n, K) renormalised over the K labels, after checking they are usable.

    With ``log_probs=True`` the input holds (possibly unnormalised) label log-probs, as the backend returns them;
    they are exponentiated stably (max subtracted) before renormalising. ``what`` names the array in errors.
    """
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{what} must be a 2-D array (n_questions, n_labels), got shape {arr.shape}")
    if log_probs:
        if np.any(np.isnan(arr)) or np.any(arr == np.inf):
            raise ValueError(f"{what} holds NaN or +inf log-probs")
        if np.any(np.all(arr == -np.inf, axis=1)):
            raise ValueError(f"{what} has a row whose log-probs are all -inf (no label has any probability)")
        arr = np.exp(arr - arr.max(axis=1, keepdims=True))
    else:
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{what} must hold finite, non-negative probabilities")
    sums = arr.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        rows = np.flatnonzero(sums[:, 0] <= 0).tolist()
        raise ValueError(f"{what} rows {rows[:10]} sum to 0: no label has any probability there")
    return arr / sums


class PostHocDebias:
    """Divide the label distribution by a reference (image-removed) distribution: p_cal ∝ diag(p_ref)^-1 p.

    Parameters
    ----------
    references: names of the reference inputs combined, each one of ``REFERENCES`` ("none", "blank", "noise",
        "unk"); their label distributions are summed and renormalised (Zhang et al. 2024).
    mode: "per_question" divides each question by its own reference (the paper); "dataset" divides every
        question by the mean reference over the questions ``fit`` saw.

    Attributes (after ``fit``)
    --------------------------
    reference_: (n_questions, K) combined per-question reference distribution.
    prior_: (K,) mean of ``reference_`` over the questions (``dataset`` mode only).

    Every method taking probabilities also takes ``log_probs=True`` for label log-probs (natural log, possibly
    unnormalised over the labels), which is what ``Backend.label_log_probs`` returns.

    Example
    -------
    >>> debias = PostHocDebias(references=("none", "noise"), mode="dataset").fit({"none": p_none, "noise": p_noise})
    >>> answers = debias.predict(p_image)
    """

    reference_: np.ndarray
    prior_: np.ndarray

    def __init__(
        self,
        references: Sequence[str] = ("none",),
        mode: Literal["per_question", "dataset"] = "per_question",
    ) -> None:
        self.references = references
        self.mode = mode
        self._validate_params()

    # -- scikit-learn style parameters ---------------------------------------------------------
    def _validate_params(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if isinstance(self.references, str):
            raise ValueError(f"references must be a sequence of names, e.g. ({self.references!r},), not a string")
        names = list(self.references)
        if not names:
            raise ValueError(f"references must name at least one reference input out of {list(REFERENCES)}")
        unknown = [name for name in names if name not in REFERENCES]
        if unknown:
            raise ValueError(f"unknown reference(s) {unknown}; choose from {list(REFERENCES)}")
        if len(set(names)) != len(names):
            duplicated = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"references {duplicated} are listed twice; each reference counts once")

    def get_params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- the reference --------------------------------------------------------------------------
    def combine_references(self, reference_probs: Mapping[str, np.ndarray], *, log_probs: bool = False) -> np.ndarray:
        """Combined per-question reference (n, K): each named reference renormalised over the labels, the
        distributions summed and renormalised (i.e. their mean). Keys outside ``references`` are ignored, so
        one dict of every reference scored can feed estimators that use different subsets."""
        self._validate_params()
        missing = [name for name in self.references if name not in reference_probs]
        if missing:
            raise KeyError(
                f"reference probabilities for {missing} are missing; got {sorted(reference_probs)}, "
                f"need {list(self.references)}"
            )
        dists = [
            label_distribution(reference_probs[name], log_probs=log_probs, what=f"reference_probs[{name!r}]")
            for name in self.references
        ]
        shapes = {name: d.shape for name, d in zip(self.references, dists, strict=True)}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"reference probabilities disagree in shape (n_questions, n_labels): {shapes}")
        total = np.sum(dists, axis=0)
        return total / total.sum(axis=1, keepdims=True)

    def fit(self, reference_probs: Mapping[str, np.ndarray], *, log_probs: bool = False) -> PostHocDebias:
        """Learn the reference from ``reference_probs``: name -> (n_questions, K) label probabilities with that
        reference input, rows in the same question order for every name. Stores ``reference_`` and, in
        ``dataset`` mode, ``prior_`` = mean of ``reference_`` over the questions."""
        reference = self.combine_references(reference_probs, log_probs=log_probs)
        if reference.shape[0] == 0:
            raise ValueError("fit needs reference probabilities for at least one question")
        self.reference_ = reference
        if self.mode == "dataset":
            prior = reference.mean(axis=0)
            self.prior_ = prior / prior.sum()
        elif hasattr(self, "prior_"):
            del self.prior_
        return self

    def _check_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(
                f"{type(self).__name__}(mode={self.mode!r}) is not fitted yet; call fit(reference_probs) first"
                + (" or pass reference_probs to this call" if self.mode == "per_question" else "")
            )

    def _reference_for(
        self, probs: np.ndarray, reference_probs: Mapping[str, np.ndarray] | None, log_probs: bool
    ) -> np.ndarray:
        if self.mode == "dataset":
            if reference_probs is not None:
                raise ValueError(
                    "dataset mode divides by the fitted prior_; fit(reference_probs) instead of passing them here"
                )
            self._check_fitted("prior_")
            if self.prior_.shape[0] != probs.shape[1]:
                raise ValueError(f"prior_ covers {self.prior_.shape[0]} labels but probs have {probs.shape[1]}")
            return np.broadcast_to(self.prior_, probs.shape)
        if reference_probs is not None:
            reference = self.combine_references(reference_probs, log_probs=log_probs)
            what = "reference_probs"
        else:
            self._check_fitted("reference_")
            reference, what = self.reference_, "the fitted reference_"
        if reference.shape != probs.shape:
            raise ValueError(
                f"per_question mode needs one reference row per question: probs have shape {probs.shape}, "
                f"{what} {reference.shape}"
            )
        return reference

    # -- using the reference --------------------------------------------------------------------
    def transform(
        self,
        probs: np.ndarray,
        reference_probs: Mapping[str, np.ndarray] | None = None,
        *,
        log_probs: bool = False,
    ) -> np.ndarray:
        """Debiased label distribution (n, K) from the label probabilities with the real image (n, K).

        ``per_question`` mode divides by ``reference_probs`` (name -> (n, K), same rows as ``probs``) or, when
        None, by the fitted ``reference_``; ``dataset`` mode divides by ``prior_``. ``log_probs`` applies to
        ``probs`` and ``reference_probs`` alike. Reference probabilities are floored at ``PROB_FLOOR``.
        """
        p = label_distribution(probs, log_probs=log_probs)
        p_ref = self._reference_for(p, reference_probs, log_probs)
        # In log space: p / p_ref overflows when p_ref is near the floor.
        with np.errstate(divide="ignore"):
            log_cal = np.log(p) - np.log(np.maximum(p_ref, PROB_FLOOR))
        log_cal -= log_cal.max(axis=1, keepdims=True)
        calibrated = np.exp(log_cal)
        return calibrated / calibrated.sum(axis=1, keepdims=True)

    def predict(
        self,
        probs: np.ndarray,
        reference_probs: Mapping[str, np.ndarray] | None = None,
        *,
        log_probs: bool = False,
    ) -> np.ndarray:
        """Index (n,) of the debiased most likely label per question (ties: the first label)."""
        return self.transform(probs, reference_probs, log_probs=log_probs).argmax(axis=1)

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters and fitted state (``reference_``, ``prior_`` where fitted)."""
        data: dict[str, Any] = {
            "method": _METHOD,
            "params": {"references": list(self.references), "mode": self.mode},
            "biasaudit_version": __version__,
        }
        if hasattr(self, "reference_"):
            data["reference"] = self.reference_.tolist()
        if hasattr(self, "prior_"):
            data["prior"] = self.prior_.tolist()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PostHocDebias:
        """Inverse of ``to_dict``: the same parameters and fitted state."""
        if data.get("method") != _METHOD:
            raise ValueError(f"not a {cls.__name__} record: method is {data.get('method')!r}, expected {_METHOD!r}")
        params = dict(data.get("params", {}))
        unknown = sorted(set(params) - {"references", "mode"})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} parameter(s) {unknown}")
        if "references" in params:
            params["references"] = tuple(params["references"])
        estimator = cls(**params)
        if data.get("reference") is not None:
            estimator.reference_ = np.asarray(data["reference"], dtype=np.float64)
        if data.get("prior") is not None:
            estimator.prior_ = np.asarray(data["prior"], dtype=np.float64)
        return estimator
