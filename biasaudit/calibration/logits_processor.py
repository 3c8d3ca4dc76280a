"""Apply a fitted label prior at decode time, as a transformers ``LogitsProcessor``.

Users keep calling ``model.generate(...)``; on the answer's first token the processor subtracts log prior_ from
the label tokens' logits, so that among the labels the distribution is p(y|x) / prior(y) renormalised
and the greedy choice is the calibrated label. With ``restrict_to_labels`` (the default) every other token is
masked on that step, so the answer is always one of the labels; later steps are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from biasaudit.errors import LabelCollisionError


class LabelPriorLogitsProcessor(LogitsProcessor):
    """Divide the label tokens' probabilities by a prior on the first generated position.

    Parameters
    ----------
    label_token_ids: first token of each label, in the prior's order.
    prior: (K,) fitted prior (``calibrator.prior_``).
    restrict_to_labels: mask every non-label token on the first generated position.
    """

    def __init__(self, label_token_ids: Sequence[int], prior: Sequence[float], restrict_to_labels: bool = True):
        if len(set(label_token_ids)) != len(label_token_ids):
            raise LabelCollisionError("labels share a first token; a decode-time prior needs distinct first tokens")
        if len(label_token_ids) != len(prior):
            raise ValueError(f"{len(label_token_ids)} label tokens but a prior over {len(prior)} labels")
        self.label_token_ids = list(label_token_ids)
        self.log_prior = torch.log(torch.as_tensor(np.asarray(prior, dtype=np.float64)))
        self.restrict_to_labels = restrict_to_labels
        self._prompt_len: int | None = None

    @classmethod
    def from_calibrator(cls, calibrator: Any, tokenizer: Any, restrict_to_labels: bool = True):
        """Build from a fitted calibrator (its ``labels_`` and ``prior_``) and the model's tokenizer."""
        ids = [tokenizer(label, add_special_tokens=False).input_ids[0] for label in calibrator.labels_]
        return cls(ids, calibrator.prior_, restrict_to_labels)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:  # type: ignore[override]
        length = input_ids.shape[1]
        if self._prompt_len is None or length <= self._prompt_len:  # a new generate() call
            self._prompt_len = length
        if length != self._prompt_len:
            return scores
        ids = torch.tensor(self.label_token_ids, device=scores.device)
        out = torch.full_like(scores, -float("inf")) if self.restrict_to_labels else scores.clone()
        # logit - log prior: among the labels, softmax then gives p(y|x) / prior(y), renormalised.
        out[:, ids] = scores[:, ids] - self.log_prior.to(scores.device, scores.dtype)
        return out
