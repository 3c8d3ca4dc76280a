"""The calibrator contract shared by every ICL label-bias calibrator.

All of them estimate a label prior ``prior_`` (K,) from label log-probs the backend returns. Fitting is
two steps: ``calibration_queries`` names the inputs whose label log-probs the prior needs (content-free
strings, random in-domain strings, or the batch itself), and ``fit_log_probs`` turns those log-probs
into the prior, so a run that saved them can refit without the model. ``fit`` does both.

Contextual calibration (Zhao et al. 2021) and domain-context calibration (Fei et al. 2023) predict with

    p_cal(y | x)  ∝  p(y | x) / prior_(y)        (diag(prior)^-1 p, renormalised)

where p is the label distribution renormalised over the K labels. Batch calibration (Zhou et al. 2024)
subtracts its prior instead (``rule = "subtract"``, see ``batch.py``); for two labels the two rules
pick the same label.

scikit-learn conventions: hyper-parameters in ``__init__`` stored unchanged, ``fit`` returns ``self``,
learned state ends with ``_``. A fitted prior saves to JSON with the labels, the prompt (and its
fingerprint) and the model's name and weights fingerprint; ``load`` and ``ICLClassifier.use_prior``
refuse it for other labels, another prompt or label mode, or other weights.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from biasaudit import __version__
from biasaudit.backend.protocol import Backend
from biasaudit.calibration.prompt import ICLPrompt, Query, renormalise, softmax_rows
from biasaudit.errors import BiasAuditError, InvalidRequestError, NotFittedError


class PriorMismatchError(BiasAuditError, ValueError):
    """A saved prior was fitted for other labels, another prompt or label mode, or other model weights."""


class UnknownPriorModelError(PriorMismatchError):
    """A saved prior does not say which weights it was fitted on (``model_fingerprint`` is null)."""


def normalised_mean_prior(log_probs: np.ndarray) -> np.ndarray:
    """Average the RAW label probabilities (n, K) over the rows, then normalise once: (K,).

    The reference code of Zhao et al. (2021, ``get_p_content_free``) and of Fei et al. (2023,
    fywalter/label-bias) estimates a prior this way; averaging rows renormalised one by one gives a
    different prior (rows where the labels get little mass would count as much as the others).
    """
    log_probs = np.atleast_2d(np.asarray(log_probs, dtype=np.float64))
    if log_probs.shape[0] == 0:
        raise InvalidRequestError("a prior needs the label log-probs of at least one input")
    # exp(lp - max) keeps the average exact up to one common factor, which the normalisation removes.
    raw = np.exp(log_probs - log_probs.max())
    mean = raw.mean(axis=0)
    return mean / mean.sum()


class PriorCalibrator:
    """Base class: holds ``prior_`` and applies p / prior. Subclasses implement ``fit``."""

    method: ClassVar[str] = "none"
    # How the prior is applied: "divide" (p / prior, renormalised) or "subtract" (p - prior; batch calibration).
    rule: ClassVar[str] = "divide"
    # Whether the prior is estimated from the very inputs it calibrates (batch calibration), not from inputs of its own.
    fits_on_batch: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[PriorCalibrator]]] = {}
    prior_: np.ndarray
    labels_: list[str]
    prompt_fingerprint_: str | None
    prompt_: ICLPrompt | None
    model_: str | None
    model_fingerprint_: str | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        PriorCalibrator.registry[cls.method] = cls

    # -- scikit-learn style parameters ---------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fitting --------------------------------------------------------------------------------
    def calibration_queries(self, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> list[Query]:
        """The inputs whose label log-probs ``fit_log_probs`` needs (none for the uncalibrated baseline)."""
        return []

    def fit_log_probs(
        self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None
    ) -> PriorCalibrator:
        """Estimate ``prior_`` from the label log-probs (n, K) of ``calibration_queries`` (no model call)."""
        raise NotImplementedError

    def fit(self, backend: Backend, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> PriorCalibrator:
        """Estimate ``prior_`` for ``prompt`` on ``backend``; ``inputs`` are unlabeled task inputs."""
        queries = self.calibration_queries(prompt, inputs)
        log_probs = prompt.label_log_probs(backend, queries) if queries else np.zeros((0, len(prompt.labels)))
        return self.fit_log_probs(log_probs, prompt, backend)

    def _set_prior(self, prior: np.ndarray, prompt: ICLPrompt, backend: Backend | None) -> None:
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (len(prompt.labels),) or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
            raise InvalidRequestError(f"a prior must be {len(prompt.labels)} positive numbers, got {prior}")
        self.prior_ = prior / prior.sum()
        self.labels_ = list(prompt.labels)
        self.prompt_fingerprint_ = prompt.fingerprint()
        self.prompt_ = prompt
        self.model_ = backend.name if backend is not None else None
        fingerprint = getattr(backend, "fingerprint", None) if backend is not None else None
        self.model_fingerprint_ = str(fingerprint) if fingerprint else None

    def _check_fitted(self) -> None:
        if not hasattr(self, "prior_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(...) first")

    # -- using the prior ------------------------------------------------------------------------
    def transform(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated label scores (n, K) from label probabilities (n, K), raw or normalised.

        For the dividing calibrators a distribution, p / prior renormalised; batch calibration
        returns the paper's p - prior (rows sum to zero). The argmax is the calibrated label either way.
        """
        self._check_fitted()
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape[-1] != len(self.prior_):
            raise InvalidRequestError(f"expected {len(self.prior_)} label columns, got shape {probs.shape}")
        return renormalise(probs / self.prior_)

    def transform_log_probs(self, log_probs: np.ndarray) -> np.ndarray:
        """Like ``transform`` but from label log-probs (n, K), as the backend returns them."""
        self._check_fitted()
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if log_probs.shape[-1] != len(self.prior_):
            raise InvalidRequestError(f"expected {len(self.prior_)} label columns, got shape {log_probs.shape}")
        return softmax_rows(log_probs - np.log(self.prior_))

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """Index of the calibrated most likely label per row."""
        return self.transform(probs).argmax(axis=-1)

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "method": self.method,
            "params": self.get_params(),
            "prior": self.prior_.tolist(),
            "labels": self.labels_,
            "prompt_fingerprint": self.prompt_fingerprint_,
            "prompt": self.prompt_.to_dict() if self.prompt_ is not None else None,
            "model": self.model_,
            "model_fingerprint": self.model_fingerprint_,
            "biasaudit_version": __version__,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorCalibrator:
        method = data.get("method")
        klass = PriorCalibrator.registry.get(str(method))
        if klass is None:
            raise InvalidRequestError(
                f"unknown calibration method {method!r}; known: {sorted(PriorCalibrator.registry)}"
            )
        if cls is not PriorCalibrator and not issubclass(klass, cls):
            raise InvalidRequestError(f"the file holds a {method!r} prior, not a {cls.method!r} one")
        calibrator = klass(**data.get("params", {}))
        calibrator.prior_ = np.asarray(data["prior"], dtype=np.float64)
        calibrator.labels_ = list(data["labels"])
        calibrator.prompt_fingerprint_ = data.get("prompt_fingerprint")
        calibrator.prompt_ = ICLPrompt.from_dict(data["prompt"]) if data.get("prompt") else None
        calibrator.model_ = data.get("model")
        calibrator.model_fingerprint_ = data.get("model_fingerprint")
        return calibrator

    def save(self, path: str | Path) -> None:
        from biasaudit.jsonio import write_json_atomic

        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        prompt: ICLPrompt | None = None,
        labels: Sequence[str] | None = None,
        backend: Backend | None = None,
        model: str | None = None,
        allow_unknown_model: bool = False,
    ) -> PriorCalibrator:
        """Load a saved prior, refusing it when it was fitted for other labels, prompt or weights.

        ``backend``: the model it will be used with; its weights fingerprint must be the one the prior
        was fitted on, and a prior that records none is refused unless ``allow_unknown_model``.
        ``model`` (a name) is only compared when no ``backend`` is given: names say nothing about weights.
        """
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise PriorMismatchError(f"cannot read prior file {path}: {exc}") from exc
        calibrator = cls.from_dict(data)
        expected_labels = list(prompt.labels) if prompt is not None else (list(labels) if labels else None)
        if expected_labels is not None and calibrator.labels_ != expected_labels:
            raise PriorMismatchError(
                f"{path} was fitted for labels {calibrator.labels_}, not {expected_labels}; refit it"
            )
        if prompt is not None:
            calibrator.check_prompt(prompt, where=str(path))
        if backend is not None:
            calibrator.check_backend(backend, allow_unknown_model=allow_unknown_model, where=str(path))
        elif model is not None and calibrator.model_ is not None and calibrator.model_ != model:
            raise PriorMismatchError(f"{path} was fitted on model {calibrator.model_!r}, not {model!r}; refit it")
        return calibrator

    # -- checks before a prior is used ------------------------------------------------------------
    def check_prompt(self, prompt: ICLPrompt, *, where: str = "the prior") -> None:
        """Refuse ``prompt`` unless this prior was fitted for it: the same labels, label mode and prompt."""
        self._check_fitted()
        if self.labels_ != list(prompt.labels):
            raise PriorMismatchError(
                f"{where} was fitted for labels {self.labels_}, not {list(prompt.labels)}; refit it"
            )
        if self.prompt_ is not None:
            saved = (self.prompt_.mode, self.prompt_.length_normalize)
            if saved != (prompt.mode, prompt.length_normalize):
                raise PriorMismatchError(
                    f"{where} was fitted with label mode {self.prompt_.mode!r} (length_normalize="
                    f"{self.prompt_.length_normalize}), not {prompt.mode!r} (length_normalize="
                    f"{prompt.length_normalize}): label probabilities differ between modes; refit it"
                )
        if self.prompt_fingerprint_ != prompt.fingerprint():
            raise PriorMismatchError(
                f"{where} was fitted for another prompt (template, demonstrations or chat template: fingerprint "
                f"{self.prompt_fingerprint_} vs {prompt.fingerprint()}); refit it"
            )

    def check_backend(self, backend: Backend, *, allow_unknown_model: bool = False, where: str = "the prior") -> None:
        """Refuse ``backend`` unless its weights fingerprint is the one this prior was fitted on.

        A prior that records no fingerprint (fitted without a backend, or saved by an older version)
        is refused unless ``allow_unknown_model``: the user then vouches that it fits these weights.
        """
        self._check_fitted()
        own = str(getattr(backend, "fingerprint", "") or "")
        if self.model_fingerprint_ is None:
            if allow_unknown_model:
                return
            raise UnknownPriorModelError(
                f"{where} does not record which weights it was fitted on (model_fingerprint is null; model "
                f"{self.model_!r}); refit it on {backend.name!r}, or pass allow_unknown_model=True to use it anyway"
            )
        if own != self.model_fingerprint_:
            raise PriorMismatchError(
                f"{where} was fitted on other weights: model {self.model_!r} with fingerprint "
                f"{self.model_fingerprint_}, but {backend.name!r} has fingerprint {own or 'none'}; refit it"
            )


class NoCalibration(PriorCalibrator):
    """The uncalibrated baseline: a uniform prior, so ``transform`` only renormalises."""

    method = "none"

    def __init__(self) -> None:
        pass

    def fit_log_probs(self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None) -> NoCalibration:
        self._set_prior(np.ones(len(prompt.labels)), prompt, backend)
        return self
