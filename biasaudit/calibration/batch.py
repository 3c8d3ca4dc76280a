"""Batch calibration (Zhou et al. ICLR 2024, "Batch Calibration: Rethinking Calibration for In-Context
Learning and Prompt Engineering").

The prior is estimated from the test inputs themselves, with no extra forward passes:
predict argmax_y [log p(y|x) − mean_{x' in batch} log p(y|x')]. Subtracting a per-label mean of
log-probs is dividing by the geometric mean of the probabilities, so ``prior_`` is that geometric
mean, normalised. Adding a constant to one label's log-prob for every input changes nothing.

Inference servers see one request at a time: ``partial_fit`` keeps a running mean, so the prior
improves as requests arrive (``BatchCalibrator.online``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.calibration.base import PriorCalibrator
from biasaudit.calibration.prompt import ICLPrompt, Query, softmax_rows


class BatchCalibrator(PriorCalibrator):
    """Prior = normalised geometric mean of the label distributions over a batch of inputs.

    Attributes
    ----------
    prior_: (K,) the prior. n_seen_: number of inputs it was estimated from.
    """

    method = "bc"

    def __init__(self) -> None:
        pass

    def fit(self, backend: Backend, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> BatchCalibrator:
        if len(inputs) == 0:
            raise ValueError("batch calibration needs a batch of (unlabeled) inputs")
        return self.fit_log_probs(prompt.label_log_probs(backend, inputs), prompt, backend)

    def fit_log_probs(
        self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None
    ) -> BatchCalibrator:
        """Estimate the prior from already computed label log-probs (n, K) of the batch."""
        for attr in ("_sum_log_p", "n_seen_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(log_probs, prompt, backend)

    def partial_fit(self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None) -> BatchCalibrator:
        """Fold more inputs' label log-probs (n, K) into the running mean (streaming mode)."""
        log_p = np.log(softmax_rows(np.atleast_2d(log_probs)))
        if log_p.shape[1] != len(prompt.labels):
            raise ValueError(f"expected {len(prompt.labels)} label columns, got shape {log_p.shape}")
        self._sum_log_p = getattr(self, "_sum_log_p", np.zeros(log_p.shape[1])) + log_p.sum(axis=0)
        self.n_seen_ = getattr(self, "n_seen_", 0) + len(log_p)
        mean = self._sum_log_p / self.n_seen_
        self._set_prior(np.exp(mean - mean.max()), prompt, backend)
        return self
