"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use", §5).

The prior is the label distribution the prompt produces for content-free inputs ("N/A", "", "[MASK]"),
each placed in every input slot of the same few-shot prompt. As in the authors' code
(``get_p_content_free``, also in Fei et al.'s fywalter/label-bias), the RAW label probabilities are
averaged over the content-free inputs and normalised once into p_cf; prediction is argmax p / p_cf.
Domain-context calibration builds its prior the same way (``base.normalised_mean_prior``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.calibration.base import PriorCalibrator, normalised_mean_prior
from biasaudit.calibration.prompt import ICLPrompt, Query
from biasaudit.errors import InvalidRequestError

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


class ContextualCalibrator(PriorCalibrator):
    """Prior from content-free inputs in the same prompt.

    Parameters
    ----------
    content_free: the content-free strings (paper default: "N/A", "", "[MASK]").

    Attributes
    ----------
    prior_: (K,) normalised mean of the raw label probabilities over the content-free inputs.
    content_free_log_probs_: (n_content_free, K) each input's raw label log-probs.
    """

    method = "cc"

    def __init__(self, content_free: Sequence[str] = CONTENT_FREE_INPUTS) -> None:
        self.content_free = content_free

    def calibration_queries(self, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> list[Query]:
        if len(self.content_free) == 0:
            raise InvalidRequestError("contextual calibration needs at least one content-free input")
        return [prompt.uniform(text) for text in self.content_free]

    def fit_log_probs(
        self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None
    ) -> ContextualCalibrator:
        """Prior from the content-free inputs' label log-probs (n_content_free, K)."""
        self.content_free_log_probs_ = np.atleast_2d(np.asarray(log_probs, dtype=np.float64))
        self._set_prior(normalised_mean_prior(self.content_free_log_probs_), prompt, backend)
        return self
