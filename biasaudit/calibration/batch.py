"""Batch calibration (Zhou et al. ICLR 2024, "Batch Calibration: Rethinking Calibration for In-Context
Learning and Prompt Engineering", arXiv 2309.17249, §4).

The contextual prior is estimated from the test inputs themselves, with no extra forward passes, by
marginalising the label distribution over a batch of M inputs (the paper's Eq. 1):

    p̂(y | C) = E_x[p(y | x, C)] ≈ (1/M) Σ_i p(y | x_i, C),

an arithmetic mean of the per-input label distributions p (renormalised over the K labels), and the
prediction subtracts it (Eq. 2):

    ŷ_i = argmax_y  p(y | x_i, C) − p̂(y | C).

It is not a geometric mean (a mean of log-probs). For two labels subtracting the prior and dividing
by it choose the same label (p_1 − p̂_1 > p_2 − p̂_2 ⇔ p_1 > p̂_1 ⇔ p_1/p̂_1 > p_2/p̂_2); for more labels
they can differ.

Inference servers see one request at a time: ``partial_fit`` keeps a running mean (the paper's
running estimate, Eq. 3, weighted by inputs rather than by mini-batches, so it equals Eq. 1 over
every input seen), and the prior improves as requests arrive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.calibration.base import PriorCalibrator
from biasaudit.calibration.prompt import ICLPrompt, Query, renormalise, softmax_rows
from biasaudit.errors import InvalidRequestError


class BatchCalibrator(PriorCalibrator):
    """Prior = mean label distribution over a batch of inputs (Eq. 1); predict argmax p − prior (Eq. 2).

    Attributes
    ----------
    prior_: (K,) the contextual prior p̂(y|C). n_seen_: number of inputs it was estimated from.
    """

    method = "bc"
    rule = "subtract"
    fits_on_batch = True

    def __init__(self) -> None:
        pass

    def calibration_queries(self, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> list[Query]:
        """The batch itself: BC needs no inputs beyond the ones it calibrates."""
        if len(inputs) == 0:
            raise InvalidRequestError("batch calibration needs a batch of (unlabeled) inputs")
        return list(inputs)

    def fit_log_probs(
        self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None
    ) -> BatchCalibrator:
        """Estimate the prior from already computed label log-probs (n, K) of the batch."""
        for attr in ("_sum_p", "n_seen_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(log_probs, prompt, backend)

    def partial_fit(self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None) -> BatchCalibrator:
        """Fold more inputs' label log-probs (n, K) into the running mean (streaming mode)."""
        p = softmax_rows(np.atleast_2d(log_probs))
        if p.shape[1] != len(prompt.labels):
            raise InvalidRequestError(f"expected {len(prompt.labels)} label columns, got shape {p.shape}")
        if len(p) == 0:
            raise InvalidRequestError("batch calibration needs a batch of (unlabeled) inputs")
        self._sum_p = getattr(self, "_sum_p", np.zeros(p.shape[1])) + p.sum(axis=0)
        self.n_seen_ = getattr(self, "n_seen_", 0) + len(p)
        self._set_prior(self._sum_p / self.n_seen_, prompt, backend)
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        """The paper's calibrated scores p(y|x) − p̂(y) (n, K), p renormalised over the labels (rows sum to 0)."""
        self._check_fitted()
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape[-1] != len(self.prior_):
            raise InvalidRequestError(f"expected {len(self.prior_)} label columns, got shape {probs.shape}")
        return renormalise(probs) - self.prior_

    def transform_log_probs(self, log_probs: np.ndarray) -> np.ndarray:
        """Like ``transform`` but from label log-probs (n, K), as the backend returns them."""
        self._check_fitted()
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if log_probs.shape[-1] != len(self.prior_):
            raise InvalidRequestError(f"expected {len(self.prior_)} label columns, got shape {log_probs.shape}")
        return softmax_rows(log_probs) - self.prior_
