"""Post-hoc debiasing of an LVLM's answer distribution (docs/methods.md §5).

Zhang et al. 2024, "Debiasing Multimodal Large Language Models" (arXiv 2403.05262, code yfzhang114/LLaVA-Align):
an LVLM's answer leans on its language prior as much as on the image. The prior is read off the same model with
the image taken away -- no image (``none``), a blank or ``unk`` image, or a noise image (``noise``) -- and divided
out of the real answer distribution over the K answer labels,

    p_cal  ∝  diag(p_ref)^-1 p                                  (the paper's post-hoc debias rule)

where p is the label distribution with the real image, renormalised over the labels, and p_ref the reference
one. What follows is the authors' code (``experiments/eval/eval_pope_calibrate.py``, also the MME and MMMU
scripts), which the paper's formula leaves open:

- several references are combined by summing their *raw* label probabilities (each reference's probability of
  each label, not renormalised per reference) and normalising once, so a reference that puts little mass on the
  answer labels weighs little;
- ``per_question`` mode (the paper's ``individual``) divides each question by its own combined reference,
  with ``epsilon`` = 1e-4 added to every reference probability (``p_cf = [x + 1e-4 for x in p_cf]``):
  the correction factor between two labels is then at most about 1/epsilon = 1e4, so a language prior
  stronger than 1e4 : 1 is only partly divided out;
- ``dataset`` mode (the code's ``all``) divides by one prior ``prior_`` (K,): the raw combined label
  probabilities averaged over the questions and normalised, with no epsilon. It can ship with a prompt, as ICL
  calibration's does (``biasaudit.calibration.base``).

``epsilon`` is a constructor parameter: 0 gives the exact division of the paper's formula (strong priors
fully removed), with zero reference probabilities floored at ``PROB_FLOOR``.

The reference probabilities themselves come from a backend (the image-less prompts); this module only does the
arithmetic, so it is exact and cheap to test.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from biasaudit import __version__
from biasaudit.errors import InvalidRequestError, NotFittedError

REFERENCES: tuple[str, ...] = ("none", "blank", "noise", "unk")
"""Reference inputs of the paper: no image, a blank image, a noise image, an ``unk`` (placeholder) image."""

MODES: tuple[str, ...] = ("per_question", "dataset")

REFERENCE_EPSILON = 1e-4
"""What the authors' code adds to every per-question reference probability before dividing (see the module
docstring); the default ``epsilon`` in ``per_question`` mode."""

PROB_FLOOR = float(np.finfo(np.float64).tiny)
"""Smallest reference probability divided by when ``epsilon`` is 0. A label the reference gives probability 0
would make p / p_ref infinite (and 0/0 a NaN where p is 0 too); flooring keeps the rule's limit -- such a label
wins whenever the real image gives it any mass -- while every output stays a finite distribution. The floor is
the smallest normal float, not a "small" number like 1e-12, so that ``epsilon=0`` really is the exact division:
a strong language prior leaves the other labels reference probabilities far below 1e-12 (e^-40 is common)."""

_METHOD = "lvlm_posthoc_debias"


def _log_label_masses(probs: np.ndarray, *, log_probs: bool, what: str) -> np.ndarray:
    """Log of the raw label probabilities (n, K) after checking they are usable (-inf where a label has none)."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise InvalidRequestError(f"{what} must be a 2-D array (n_questions, n_labels), got shape {arr.shape}")
    if log_probs:
        if np.any(np.isnan(arr)) or np.any(arr == np.inf):
            raise InvalidRequestError(f"{what} holds NaN or +inf log-probs")
        if np.any(np.all(arr == -np.inf, axis=1)):
            raise InvalidRequestError(f"{what} has a row whose log-probs are all -inf (no label has any probability)")
        return arr
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InvalidRequestError(f"{what} must hold finite, non-negative probabilities")
    zero = np.all(arr == 0, axis=1)
    if np.any(zero):
        raise InvalidRequestError(
            f"{what} rows {np.flatnonzero(zero)[:10].tolist()} sum to 0: no label has any probability there"
        )
    with np.errstate(divide="ignore"):
        return np.log(arr)


def _normalised(log_masses: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(log_masses) normalised along ``axis``, computed stably (the max subtracted first)."""
    shifted = np.exp(log_masses - log_masses.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def label_distribution(probs: np.ndarray, *, log_probs: bool = False, what: str = "probs") -> np.ndarray:
    """Rows of ``probs`` (n, K) renormalised over the K labels, after checking they are usable.

    With ``log_probs=True`` the input holds (possibly unnormalised) label log-probs, as the backend returns them;
    they are exponentiated stably (max subtracted) before renormalising. ``what`` names the array in errors.
    """
    return _normalised(_log_label_masses(probs, log_probs=log_probs, what=what))


class PostHocDebias:
    """Divide the label distribution by a reference (image-removed) distribution: p_cal ∝ diag(p_ref + ε)^-1 p.

    Parameters
    ----------
    references: names of the reference inputs combined, each one of ``REFERENCES`` ("none", "blank", "noise",
        "unk"); their raw label probabilities are summed and normalised once (Zhang et al. 2024's code).
    mode: "per_question" divides each question by its own reference (the paper); "dataset" divides every
        question by the mean raw reference over the questions ``fit`` saw, normalised.
    epsilon: ε added to every reference probability before dividing. None (default) follows the authors' code:
        ``REFERENCE_EPSILON`` = 1e-4 in ``per_question`` mode, 0 in ``dataset`` mode. It bounds the correction
        between two labels by about 1/ε, so with the default a prior stronger than 1e4 : 1 survives in part; 0
        divides exactly (a zero reference probability is then floored at ``PROB_FLOOR``).

    Attributes (after ``fit``)
    --------------------------
    reference_: (n_questions, K) combined per-question reference distribution.
    prior_: (K,) the dataset prior (``dataset`` mode only).

    Every method taking probabilities also takes ``log_probs=True`` for label log-probs (natural log), which is
    what ``Backend.label_log_probs`` returns. Give raw probabilities (or log-probs normalised over the
    vocabulary, as backends return them) when combining several references or fitting a dataset prior: their
    label mass is what weighs one reference, or one question, against another, as in the authors' code.
    Probabilities already renormalised over the labels weigh every reference and question equally.

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
        epsilon: float | None = None,
    ) -> None:
        self.references = references
        self.mode = mode
        self.epsilon = epsilon
        self._validate_params()

    # -- scikit-learn style parameters ---------------------------------------------------------
    def _validate_params(self) -> None:
        if self.mode not in MODES:
            raise InvalidRequestError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if isinstance(self.references, str):
            raise InvalidRequestError(
                f"references must be a sequence of names, e.g. ({self.references!r},), not a string"
            )
        names = list(self.references)
        if not names:
            raise InvalidRequestError(f"references must name at least one reference input out of {list(REFERENCES)}")
        unknown = [name for name in names if name not in REFERENCES]
        if unknown:
            raise InvalidRequestError(f"unknown reference(s) {unknown}; choose from {list(REFERENCES)}")
        if len(set(names)) != len(names):
            duplicated = sorted({name for name in names if names.count(name) > 1})
            raise InvalidRequestError(f"references {duplicated} are listed twice; each reference counts once")
        if self.epsilon is not None and not (np.isfinite(self.epsilon) and self.epsilon >= 0):
            raise InvalidRequestError(
                f"epsilon must be None (the authors' choice) or a finite number >= 0, got {self.epsilon}"
            )

    @property
    def epsilon_used(self) -> float:
        """The ε actually added: ``epsilon``, or the authors' choice for this mode when it is None."""
        if self.epsilon is not None:
            return float(self.epsilon)
        return REFERENCE_EPSILON if self.mode == "per_question" else 0.0

    def get_params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- the reference --------------------------------------------------------------------------
    def _log_combined(self, reference_probs: Mapping[str, np.ndarray], log_probs: bool) -> np.ndarray:
        """log of the summed raw label probabilities of the named references: (n, K)."""
        self._validate_params()
        missing = [name for name in self.references if name not in reference_probs]
        if missing:
            raise InvalidRequestError(
                f"reference probabilities for {missing} are missing; got {sorted(reference_probs)}, "
                f"need {list(self.references)}"
            )
        logs = [
            _log_label_masses(reference_probs[name], log_probs=log_probs, what=f"reference_probs[{name!r}]")
            for name in self.references
        ]
        shapes = {name: lm.shape for name, lm in zip(self.references, logs, strict=True)}
        if len(set(shapes.values())) != 1:
            raise InvalidRequestError(f"reference probabilities disagree in shape (n_questions, n_labels): {shapes}")
        with np.errstate(divide="ignore"):
            return np.logaddexp.reduce(np.stack(logs), axis=0)

    def combine_references(self, reference_probs: Mapping[str, np.ndarray], *, log_probs: bool = False) -> np.ndarray:
        """Combined per-question reference (n, K): the named references' raw label probabilities summed and
        normalised over the labels (the authors' ``p_cf = all_p_y / np.sum(all_p_y)``). Keys outside
        ``references`` are ignored, so one dict of every reference scored can feed estimators that use different
        subsets."""
        return _normalised(self._log_combined(reference_probs, log_probs))

    def fit(self, reference_probs: Mapping[str, np.ndarray], *, log_probs: bool = False) -> PostHocDebias:
        """Learn the reference from ``reference_probs``: name -> (n_questions, K) label probabilities with that
        reference input, rows in the same question order for every name. Stores ``reference_`` and, in
        ``dataset`` mode, ``prior_``: the raw combined probabilities averaged over the questions, normalised."""
        log_combined = self._log_combined(reference_probs, log_probs)
        if log_combined.shape[0] == 0:
            raise InvalidRequestError("fit needs reference probabilities for at least one question")
        self.reference_ = _normalised(log_combined)
        if self.mode == "dataset":
            with np.errstate(divide="ignore"):
                self.prior_ = _normalised(np.logaddexp.reduce(log_combined, axis=0))
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
                raise InvalidRequestError(
                    "dataset mode divides by the fitted prior_; fit(reference_probs) instead of passing them here"
                )
            self._check_fitted("prior_")
            if self.prior_.shape[0] != probs.shape[1]:
                raise InvalidRequestError(
                    f"prior_ covers {self.prior_.shape[0]} labels but probs have {probs.shape[1]}"
                )
            return np.broadcast_to(self.prior_, probs.shape)
        if reference_probs is not None:
            reference = self.combine_references(reference_probs, log_probs=log_probs)
            what = "reference_probs"
        else:
            self._check_fitted("reference_")
            reference, what = self.reference_, "the fitted reference_"
        if reference.shape != probs.shape:
            raise InvalidRequestError(
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
        ``probs`` and ``reference_probs`` alike. The divisor is p_ref + ``epsilon_used``, floored at
        ``PROB_FLOOR``.
        """
        log_p = _log_label_masses(probs, log_probs=log_probs, what="probs")
        p_ref = self._reference_for(log_p, reference_probs, log_probs)
        # In log space: p / p_ref overflows when p_ref is near the floor (epsilon 0), and p may underflow.
        with np.errstate(divide="ignore"):
            log_cal = log_p - np.log(np.maximum(p_ref + self.epsilon_used, PROB_FLOOR))
        return _normalised(log_cal)

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
            "params": {"references": list(self.references), "mode": self.mode, "epsilon": self.epsilon},
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
            raise InvalidRequestError(
                f"not a {cls.__name__} record: method is {data.get('method')!r}, expected {_METHOD!r}"
            )
        params = dict(data.get("params", {}))
        unknown = sorted(set(params) - {"references", "mode", "epsilon"})
        if unknown:
            raise InvalidRequestError(f"unknown {cls.__name__} parameter(s) {unknown}")
        if "references" in params:
            params["references"] = tuple(params["references"])
        estimator = cls(**params)
        if data.get("reference") is not None:
            estimator.reference_ = np.asarray(data["reference"], dtype=np.float64)
        if data.get("prior") is not None:
            estimator.prior_ = np.asarray(data["prior"], dtype=np.float64)
        return estimator
