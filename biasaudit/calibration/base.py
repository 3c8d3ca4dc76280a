"""The calibrator contract shared by every ICL label-bias calibrator.

All of them estimate a label prior ``prior_`` (K,) and predict with the same rule,

    p_cal(y | x)  ∝  p(y | x) / prior_(y)        (diag(prior)^-1 p, renormalised)

which is contextual calibration's rule (Zhao et al. 2021) and domain-context calibration's (Fei et al.
2023); batch calibration (Zhou et al. 2024) subtracts a mean log-prob, i.e. divides by a geometric-mean
prior, so it fits the same shape. They differ only in how ``fit`` estimates the prior.

scikit-learn conventions: hyper-parameters in ``__init__`` stored unchanged, ``fit`` returns ``self``,
learned state ends with ``_``. A fitted prior saves to JSON with the labels, prompt fingerprint and
model it was fitted for (and the prompt itself, so that ``load`` gives back everything needed to
score new inputs); ``load`` refuses it for a different label set, prompt or model.
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
from biasaudit.errors import BiasAuditError


class NotFittedError(BiasAuditError, AttributeError):
    """A calibrator was used before ``fit``."""


class PriorMismatchError(BiasAuditError, ValueError):
    """A saved prior was fitted for other labels, another prompt, or another model."""


class PriorCalibrator:
    """Base class: holds ``prior_`` and applies p / prior. Subclasses implement ``fit``."""

    method: ClassVar[str] = "none"
    registry: ClassVar[dict[str, type[PriorCalibrator]]] = {}
    prior_: np.ndarray
    labels_: list[str]
    prompt_fingerprint_: str | None
    prompt_: ICLPrompt | None
    model_: str | None

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
    def fit(self, backend: Backend, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> PriorCalibrator:
        """Estimate ``prior_`` for ``prompt`` on ``backend``; ``inputs`` are unlabeled task inputs."""
        raise NotImplementedError

    def _set_prior(self, prior: np.ndarray, prompt: ICLPrompt, backend: Backend | None) -> None:
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (len(prompt.labels),) or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
            raise ValueError(f"a prior must be {len(prompt.labels)} positive numbers, got {prior}")
        self.prior_ = prior / prior.sum()
        self.labels_ = list(prompt.labels)
        self.prompt_fingerprint_ = prompt.fingerprint()
        self.prompt_ = prompt
        self.model_ = backend.name if backend is not None else None

    def _check_fitted(self) -> None:
        if not hasattr(self, "prior_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(...) first")

    # -- using the prior ------------------------------------------------------------------------
    def transform(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated label distribution (n, K) from label probabilities (n, K), raw or normalised."""
        self._check_fitted()
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape[-1] != len(self.prior_):
            raise ValueError(f"expected {len(self.prior_)} label columns, got shape {probs.shape}")
        return renormalise(probs / self.prior_)

    def transform_log_probs(self, log_probs: np.ndarray) -> np.ndarray:
        """Like ``transform`` but from label log-probs (n, K), as the backend returns them."""
        self._check_fitted()
        return softmax_rows(np.asarray(log_probs, dtype=np.float64) - np.log(self.prior_))

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
            "biasaudit_version": __version__,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorCalibrator:
        method = data.get("method")
        klass = PriorCalibrator.registry.get(str(method))
        if klass is None:
            raise ValueError(f"unknown calibration method {method!r}; known: {sorted(PriorCalibrator.registry)}")
        if cls is not PriorCalibrator and not issubclass(klass, cls):
            raise ValueError(f"the file holds a {method!r} prior, not a {cls.method!r} one")
        calibrator = klass(**data.get("params", {}))
        calibrator.prior_ = np.asarray(data["prior"], dtype=np.float64)
        calibrator.labels_ = list(data["labels"])
        calibrator.prompt_fingerprint_ = data.get("prompt_fingerprint")
        calibrator.prompt_ = ICLPrompt.from_dict(data["prompt"]) if data.get("prompt") else None
        calibrator.model_ = data.get("model")
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
        model: str | None = None,
    ) -> PriorCalibrator:
        """Load a saved prior, refusing it when it was fitted for other labels, prompt or model."""
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
        if prompt is not None and calibrator.prompt_fingerprint_ != prompt.fingerprint():
            raise PriorMismatchError(f"{path} was fitted for another prompt (template or demonstrations); refit it")
        if model is not None and calibrator.model_ is not None and calibrator.model_ != model:
            raise PriorMismatchError(f"{path} was fitted on model {calibrator.model_!r}, not {model!r}; refit it")
        return calibrator


class NoCalibration(PriorCalibrator):
    """The uncalibrated baseline: a uniform prior, so ``transform`` only renormalises."""

    method = "none"

    def __init__(self) -> None:
        pass

    def fit(self, backend: Backend, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> NoCalibration:
        self._set_prior(np.ones(len(prompt.labels)), prompt, backend)
        return self
