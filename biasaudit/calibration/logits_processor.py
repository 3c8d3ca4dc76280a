"""Apply a fitted label prior at decode time, as a transformers ``LogitsProcessor``.

Users keep calling ``model.generate(...)``; on the answer's first token the processor subtracts log prior_ from
the label tokens' logits, so that among the labels the distribution is p(y|x) / prior(y) renormalised
and the greedy choice is the calibrated label. With ``restrict_to_labels`` (the default) every other token is
masked on that step, so the answer is always one of the labels; later steps are left alone.

Contract: the first step of every ``generate`` call is calibrated, whatever the prompt lengths, so one
processor can be reused across calls. transformers tells a processor nothing about calls, so a step is
recognised as a continuation when its input is the previous step's input plus one token per row (rows
may be reordered, as beam search does); anything else starts a new call. ``reset()`` forces the next
step to count as a first step (``HFBackend.generate`` calls it before each batch it generates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from biasaudit.errors import InvalidRequestError, LabelCollisionError


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
            raise InvalidRequestError(f"{len(label_token_ids)} label tokens but a prior over {len(prior)} labels")
        self.label_token_ids = list(label_token_ids)
        self.log_prior = torch.log(torch.as_tensor(np.asarray(prior, dtype=np.float64)))
        self.restrict_to_labels = restrict_to_labels
        self._last_input: torch.Tensor | None = None

    @classmethod
    def from_calibrator(cls, calibrator: Any, tokenizer: Any, restrict_to_labels: bool = True):
        """Build from a fitted calibrator (its ``labels_`` and ``prior_``) and the model's tokenizer.

        Batch calibration subtracts its prior rather than dividing by it; for two labels both choose the
        same label, so its prior is used as a divisor; for more labels it is refused.
        """
        if getattr(calibrator, "rule", "divide") != "divide" and len(calibrator.labels_) > 2:
            raise InvalidRequestError(
                f"{type(calibrator).__name__} predicts argmax p - prior, which no division by a prior "
                f"reproduces for {len(calibrator.labels_)} labels; score the labels instead (ICLClassifier.predict)"
            )
        ids = [tokenizer(label, add_special_tokens=False).input_ids[0] for label in calibrator.labels_]
        return cls(ids, calibrator.prior_, restrict_to_labels)

    def reset(self) -> None:
        """Treat the next step as the first step of a new generation."""
        self._last_input = None

    def _is_continuation(self, input_ids: torch.Tensor) -> bool:
        last = self._last_input
        if last is None or input_ids.shape[1] != last.shape[1] + 1 or input_ids.shape[0] != last.shape[0]:
            return False
        head = input_ids[:, :-1]
        if torch.equal(head, last.to(head.device)):
            return True
        # Beam search reorders rows between steps: each row must still extend some previous row.
        previous = {tuple(row) for row in last.tolist()}
        return all(tuple(row) in previous for row in head.tolist())

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:  # type: ignore[override]
        first_step = not self._is_continuation(input_ids)
        self._last_input = input_ids.detach().clone()
        if not first_step:
            return scores
        ids = torch.tensor(self.label_token_ids, device=scores.device)
        out = torch.full_like(scores, -float("inf")) if self.restrict_to_labels else scores.clone()
        # logit - log prior: among the labels, softmax then gives p(y|x) / prior(y), renormalised.
        out[:, ids] = scores[:, ids] - self.log_prior.to(scores.device, scores.dtype)
        return out
