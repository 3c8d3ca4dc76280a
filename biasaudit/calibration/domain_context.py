"""Domain-context calibration (Fei et al. ACL 2023, "Mitigating Label Biases for In-context Learning").

Content-free tokens still carry a domain: a model that has read a few reviews leans towards the
labels that review *words* evoke. DC estimates that domain-label bias with random in-domain text.
Recipe (paper and its code): 20 random strings, each ``floor(mean words per input) + 1`` words drawn
with replacement from the lower-cased, whitespace-split words of the unlabeled task inputs, followed by
" ."; each string goes into the same few-shot prompt; the raw label probabilities are averaged and
normalised into p_dc; prediction is argmax p / p_dc. Multi-slot tasks (premise + hypothesis) get one
string per slot, drawn from that slot's own words and length.

The word sampling is seeded with the demonstration seed in the reference code
(``sample_random_texts(..., seed=params['seed'])`` in fywalter/label-bias), so each demonstration set
gets its own random strings: set ``seed`` to the seed the demonstrations were drawn with.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.calibration.base import PriorCalibrator, normalised_mean_prior
from biasaudit.calibration.prompt import ICLPrompt, Query
from biasaudit.errors import InvalidRequestError


def random_in_domain_strings(
    texts: Sequence[str], n_samples: int = 20, seed: int = 0, *, suffix: str = " ."
) -> list[str]:
    """``n_samples`` strings of ``floor(mean words)+1`` words sampled with replacement from ``texts``."""
    words = [w for text in texts for w in text.lower().split()]
    if not words:
        raise InvalidRequestError("domain-context calibration needs unlabeled inputs with at least one word")
    length = math.floor(np.mean([len(text.split()) for text in texts])) + 1
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=length)) + suffix for _ in range(n_samples)]


def _slot_texts(prompt: ICLPrompt, inputs: Sequence[Query]) -> dict[str, list[str]]:
    slots: dict[str, list[str]] = {name: [] for name in prompt.fields}
    for query in inputs:
        if isinstance(query, str):
            if len(prompt.fields) != 1:
                raise InvalidRequestError(f"inputs must be mappings with fields {list(prompt.fields)}")
            slots[prompt.fields[0]].append(query)
        else:
            for name in prompt.fields:
                slots[name].append(str(query[name]))
    return slots


class DomainContextCalibrator(PriorCalibrator):
    """Prior from random strings of in-domain words in the same prompt.

    Parameters
    ----------
    n_samples: number of random strings (paper: 20).
    seed: seed of the word sampling; the reference code uses the demonstration seed.

    Attributes
    ----------
    prior_: (K,) normalised mean of the raw label probabilities over the random strings.
    random_queries_: the sampled queries, kept so a run can be inspected and reproduced.
    """

    method = "dc"

    def __init__(self, n_samples: int = 20, seed: int = 0) -> None:
        self.n_samples = n_samples
        self.seed = seed

    def sample_queries(self, prompt: ICLPrompt, inputs: Sequence[Query]) -> list[Mapping[str, str]]:
        """The random in-domain queries ``fit`` scores (one independent string per input slot)."""
        if self.n_samples < 1:
            raise InvalidRequestError("n_samples must be at least 1")
        if len(inputs) == 0:
            raise InvalidRequestError("domain-context calibration needs the task's unlabeled inputs")
        slots = _slot_texts(prompt, inputs)
        per_slot = {
            name: random_in_domain_strings(texts, self.n_samples, self.seed + i)
            for i, (name, texts) in enumerate(slots.items())
        }
        return [{name: strings[k] for name, strings in per_slot.items()} for k in range(self.n_samples)]

    def calibration_queries(self, prompt: ICLPrompt, inputs: Sequence[Query] = ()) -> list[Query]:
        self.random_queries_ = self.sample_queries(prompt, inputs)
        return list(self.random_queries_)

    def fit_log_probs(
        self, log_probs: np.ndarray, prompt: ICLPrompt, backend: Backend | None = None
    ) -> DomainContextCalibrator:
        """Prior from the random strings' label log-probs (n_samples, K)."""
        self._set_prior(normalised_mean_prior(log_probs), prompt, backend)
        return self
