"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use", §5).

The prior is the label distribution the prompt produces for content-free inputs ("N/A", "", "[MASK]"),
each placed in every input slot of the same few-shot prompt; p_cf is the mean of the renormalised
distributions, and prediction uses argmax p / p_cf.
"""

from __future__ import annotations

from collections.abc import Sequence

from biasaudit.backend.protocol import Backend
from biasaudit.calibration.base import PriorCalibrator
from biasaudit.calibration.prompt import ICLPrompt, Query, softmax_rows

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


class ContextualCalibrator(PriorCalibrator):
    """Prior from content-free inputs in the same prompt.

    Parameters
    ----------
    content_free: the content-free strings (paper default: "N/A", "", "[MASK]").

    Attributes
    ----------
    prior_: (K,) mean renormalised label distribution over the content-free inputs.
    content_free_probs_: (n_content_free, K) each input's renormalised distribution.
    """

    method = "cc"

    def __init__(self, content_free: Sequence[str] = CONTENT_FREE_INPUTS) -> None:
        self.content_free = content_free

    def fit(self, backend: Backend, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> ContextualCalibrator:
        if len(self.content_free) == 0:
            raise ValueError("contextual calibration needs at least one content-free input")
        queries = [prompt.uniform(text) for text in self.content_free]
        self.content_free_probs_ = softmax_rows(prompt.label_log_probs(backend, queries))
        self._set_prior(self.content_free_probs_.mean(axis=0), prompt, backend)
        return self
