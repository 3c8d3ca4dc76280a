"""``ICLClassifier``: few-shot classification with a calibrated label choice, in a few lines.

    clf = ICLClassifier(backend, "Review: {text}\\nSentiment: {label}", ["negative", "positive"],
                        demonstrations=[("a joy to watch", "positive"), ("dull", "negative")],
                        calibrator=DomainContextCalibrator())
    clf.fit(unlabeled_texts)          # estimates the label prior once
    clf.predict(["what a film!"])     # -> ["positive"]

The template is the format of one demonstration; the query is the same format cut just before
``{label}``. Labels are scored as ``label_prefix + word`` (" positive"), by their first token like the
paper, or by their whole token sequence (``mode="full_sequence"``) when words share a first token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biasaudit.backend.protocol import Backend, LabelMode
from biasaudit.calibration.base import NoCalibration, PriorCalibrator
from biasaudit.calibration.prompt import Demonstration, ICLPrompt, Query, build_icl_prompt, softmax_rows
from biasaudit.errors import InvalidRequestError


class ICLClassifier:
    """Few-shot classifier on any backend, with a label-bias calibrator (default: none).

    Parameters mirror ``build_icl_prompt``; ``calibrator`` is any ``PriorCalibrator``.
    Attributes after ``fit``: ``prompt_`` (the ``ICLPrompt``), ``calibrator_`` (fitted) and
    ``truncated_labels_`` (labels ``first_token`` mode reads only the first token of).
    """

    def __init__(
        self,
        backend: Backend,
        template: str,
        labels: Sequence[str],
        demonstrations: Sequence[Demonstration] = (),
        calibrator: PriorCalibrator | None = None,
        *,
        instruction: str = "",
        separator: str = "\n\n",
        label_prefix: str = " ",
        mode: LabelMode = "first_token",
        length_normalize: bool = False,
        apply_chat_template: bool = False,
    ) -> None:
        self.backend = backend
        self.template = template
        self.labels = labels
        self.demonstrations = demonstrations
        self.calibrator = calibrator
        self.instruction = instruction
        self.separator = separator
        self.label_prefix = label_prefix
        self.mode = mode
        self.length_normalize = length_normalize
        self.apply_chat_template = apply_chat_template

    def _prompt(self) -> ICLPrompt:
        return build_icl_prompt(
            self.template,
            self.labels,
            self.demonstrations,
            instruction=self.instruction,
            separator=self.separator,
            label_prefix=self.label_prefix,
            mode=self.mode,
            length_normalize=self.length_normalize,
            apply_chat_template=self.apply_chat_template,
        )

    def fit(self, unlabeled_inputs: Sequence[Query] = ()) -> ICLClassifier:
        """Build the prompt and fit the calibrator (DC samples words from ``unlabeled_inputs``).

        ``truncated_labels_``: labels of several tokens, of which ``first_token`` mode scores only the first.
        """
        self.prompt_ = self._prompt()
        self.truncated_labels_ = self.prompt_.truncated_labels(self.backend)
        calibrator = self.calibrator if self.calibrator is not None else NoCalibration()
        self.calibrator_ = calibrator.fit(self.backend, self.prompt_, unlabeled_inputs)
        return self

    def use_prior(self, calibrator: PriorCalibrator, *, allow_unknown_model: bool = False) -> ICLClassifier:
        """Use an already fitted (e.g. loaded) calibrator instead of fitting one.

        Refused (``PriorMismatchError``, naming what differs) unless it was fitted for these labels, this
        label mode and this prompt, on weights with this backend's fingerprint (``weights_fingerprint``,
        not the model's name). A prior that records no fingerprint (``model_fingerprint: null``) is
        refused unless ``allow_unknown_model=True``.
        """
        self.prompt_ = self._prompt()
        if not hasattr(calibrator, "prior_"):
            raise InvalidRequestError(f"{type(calibrator).__name__} is not fitted; fit it or load a saved prior")
        calibrator.check_prompt(self.prompt_)
        calibrator.check_backend(self.backend, allow_unknown_model=allow_unknown_model)
        self.calibrator_ = calibrator
        return self

    def label_log_probs(self, inputs: Sequence[Query]) -> np.ndarray:
        """Raw label log-probs (n, K) from the backend."""
        if not hasattr(self, "prompt_"):
            self.prompt_ = self._prompt()
        return self.prompt_.label_log_probs(self.backend, inputs)

    def predict_proba(self, inputs: Sequence[Query], *, calibrated: bool = True) -> np.ndarray:
        """Label distribution (n, K): calibrated by the fitted prior, or just renormalised."""
        log_probs = self.label_log_probs(inputs)
        if not calibrated:
            return softmax_rows(log_probs)
        if not hasattr(self, "calibrator_"):
            raise InvalidRequestError("call fit(...) (or use_prior(...)) before predicting calibrated labels")
        return self.calibrator_.transform_log_probs(log_probs)

    def predict(self, inputs: Sequence[Query]) -> list[str]:
        """The calibrated label word per input."""
        return [list(self.labels)[i] for i in self.predict_proba(inputs).argmax(axis=1)]

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and k != "backend"}
