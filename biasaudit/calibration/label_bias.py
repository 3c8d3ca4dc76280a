"""How biased is the label choice? The three label-bias types of Fei et al. (ACL 2023), plus skews.

* **Vanilla-label bias** — preference for label names with no context at all: the content-free prior
  (contextual calibration's estimator) of a zero-shot prompt, as total-variation distance from uniform.
* **Context-label bias** — preference induced by the demonstrations (their labels, order, recency):
  the mean TV distance between the content-free priors of two independently drawn demonstration sets
  (a U-statistic over pairs of sets: unbiased for its population value).
* **Domain-label bias** — preference induced by the task's vocabulary: KL(p_in-domain ‖ p_English),
  priors from random strings of in-domain words vs of common English words (wordfreq's list), same
  lengths, same prompt. Large where the domain words alone push towards a label.
* **Predicted-label skew** — TV distance between predicted and gold label histograms.
* **Recall spread** — max minus min per-class recall.

Every measurement is computed from label log-probs (``*_from_log_probs``), so a run that saved them can
be re-measured without the model; the functions taking a backend score the inputs first. The intervals
are described in ``biasaudit.calibration.intervals`` and checked by simulation in
``tests/stats/test_label_bias_intervals.py``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.calibration.base import normalised_mean_prior
from biasaudit.calibration.contextual import CONTENT_FREE_INPUTS
from biasaudit.calibration.domain_context import DomainContextCalibrator
from biasaudit.calibration.intervals import (
    distance_interval,
    pairwise_mean_interval,
    recall_spread_interval,
    skew_interval,
)
from biasaudit.calibration.prompt import ICLPrompt, Query
from biasaudit.errors import InvalidRequestError

# Content-free strings for the zero-shot prior: contextual calibration's three and more of their kind,
# so the vanilla estimate rests on enough inputs for an interval (30; see intervals.py).
VANILLA_INPUTS = (
    *CONTENT_FREE_INPUTS,
    "?",
    "...",
    "none",
    "null",
    "-",
    "text",
    "input",
    "n/a",
    "NA",
    "nothing",
    "empty",
    "blank",
    "[BLANK]",
    "<empty>",
    "(none)",
    "x",
    "---",
    "*",
    "#",
    ".",
    "unknown",
    "[UNK]",
    "<unk>",
    "no input",
    "void",
    "[]",
    "0",
)
# Demonstration sets behind the context-label bias (each a prompt with its own content-free prior).
CONTEXT_PROMPTS = 20
# Random strings per arm of the domain-label bias (DC itself uses 20).
DOMAIN_SAMPLES = 40


@dataclass
class BiasEstimate:
    """A measurement with its 95% interval (None when too few units for one)."""

    value: float
    ci95: tuple[float, float] | None
    n: int
    detail: dict | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return data


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance 0.5 * sum |p - q| between two distributions."""
    return float(0.5 * np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum())


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) in nats for strictly positive distributions."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _raw(log_probs: np.ndarray) -> np.ndarray:
    """Raw label probabilities (n, K), scaled by one common factor (the priors are ratios, so it cancels)."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    return np.exp(log_probs - log_probs.max())


# ------------------------------------------------------------------------------- from log-probs
def vanilla_label_bias_from_log_probs(log_probs: np.ndarray) -> BiasEstimate:
    """TV from uniform of the content-free prior; ``log_probs`` (n_inputs, K) of a zero-shot prompt."""
    raw = _raw(log_probs)
    prior = normalised_mean_prior(log_probs)
    uniform = np.full(len(prior), 1.0 / len(prior))
    ci = distance_interval(raw, lambda priors: 0.5 * np.abs(priors - uniform).sum(axis=1))
    return BiasEstimate(tv_distance(prior, uniform), ci, len(raw), {"prior": prior.tolist()})


def context_label_bias_from_log_probs(log_probs: np.ndarray, order_log_probs: np.ndarray | None = None) -> BiasEstimate:
    """Mean TV between the content-free priors of two demonstration sets, over every pair of sets.

    log_probs: (n_prompts, n_content_free, K), one prompt per independently drawn demonstration set.
    order_log_probs: (2, n_content_free, K) of one demonstration set in two orders (reported, not averaged).
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 3 or len(log_probs) < 2:
        raise InvalidRequestError("context-label bias compares at least two demonstration sets")
    priors = np.stack([normalised_mean_prior(lp) for lp in log_probs])
    distances = 0.5 * np.abs(priors[:, None, :] - priors[None, :, :]).sum(axis=-1)
    n = len(priors)
    value = float(distances[~np.eye(n, dtype=bool)].mean())
    detail: dict = {"priors": priors.tolist()}
    if order_log_probs is not None:
        a, b = (normalised_mean_prior(lp) for lp in np.asarray(order_log_probs, dtype=np.float64))
        detail["order_shift"] = tv_distance(a, b)
    return BiasEstimate(value, pairwise_mean_interval(distances), n, detail)


def domain_label_bias_from_log_probs(in_domain: np.ndarray, english: np.ndarray) -> BiasEstimate:
    """KL(in-domain prior ‖ English prior) from paired rows: ``in_domain``, ``english`` (n, K)."""
    raw_domain, raw_english = _raw(in_domain), _raw(english)
    if raw_domain.shape != raw_english.shape:
        raise InvalidRequestError(f"paired rows needed: {raw_domain.shape} vs {raw_english.shape}")
    k = raw_domain.shape[1]
    p, q = normalised_mean_prior(in_domain), normalised_mean_prior(english)
    paired = np.concatenate([raw_domain, raw_english], axis=1)

    def kl_rows(pq: np.ndarray) -> np.ndarray:
        return np.sum(pq[:, :k] * (np.log(pq[:, :k]) - np.log(pq[:, k:])), axis=1)

    ci = distance_interval(paired, kl_rows, blocks=2)
    detail = {"prior_in_domain": p.tolist(), "prior_english": q.tolist(), "n_labels": k}
    return BiasEstimate(kl_divergence(p, q), ci, len(paired), detail)


def predicted_label_skew(pred: Sequence[int], gold: Sequence[int], n_labels: int, seed: int = 0) -> BiasEstimate:
    """TV distance between the predicted and gold label histograms."""
    pred_a, gold_a = np.asarray(pred, dtype=np.int64), np.asarray(gold, dtype=np.int64)
    hist_pred = np.bincount(pred_a, minlength=n_labels) / len(pred_a)
    hist_gold = np.bincount(gold_a, minlength=n_labels) / len(gold_a)
    value = tv_distance(hist_pred, hist_gold)
    return BiasEstimate(value, skew_interval(pred_a, gold_a, n_labels, seed=seed), len(pred_a))


def recall_spread(pred: Sequence[int], gold: Sequence[int], n_labels: int, seed: int = 0) -> BiasEstimate:
    """Max minus min per-class recall over the classes present in ``gold``."""
    pred_a, gold_a = np.asarray(pred, dtype=np.int64), np.asarray(gold, dtype=np.int64)
    per_class = {c: float(np.mean(pred_a[gold_a == c] == c)) for c in range(n_labels) if np.any(gold_a == c)}
    recalls = list(per_class.values())
    value = float(max(recalls) - min(recalls)) if recalls else float("nan")
    ci = recall_spread_interval(pred_a, gold_a, n_labels, seed=seed)
    return BiasEstimate(value, ci, len(pred_a), {"recall": per_class})


# ---------------------------------------------------------------------- scoring, then measuring
def vanilla_log_probs(backend: Backend, zero_shot: ICLPrompt, inputs: Sequence[str] = VANILLA_INPUTS) -> np.ndarray:
    """Label log-probs (n_inputs, K) of the content-free ``inputs`` in a zero-shot prompt."""
    return zero_shot.label_log_probs(backend, [zero_shot.uniform(t) for t in inputs])


def content_free_log_probs(
    backend: Backend, prompts: Sequence[ICLPrompt], inputs: Sequence[str] = CONTENT_FREE_INPUTS
) -> np.ndarray:
    """Label log-probs (n_prompts, n_inputs, K) of contextual calibration's content-free inputs per prompt."""
    return np.stack([p.label_log_probs(backend, [p.uniform(t) for t in inputs]) for p in prompts])


def domain_queries(
    prompt: ICLPrompt, inputs: Sequence[Query], n_samples: int = DOMAIN_SAMPLES, seed: int = 0
) -> tuple[list, list]:
    """(in-domain queries, English queries): DC's random in-domain strings and, paired with each, as many
    random common English words (wordfreq) plus " ."."""
    in_domain = DomainContextCalibrator(n_samples=n_samples, seed=seed).sample_queries(prompt, inputs)
    vocabulary = english_words()
    rng = random.Random(seed + 1)
    english = [
        {name: " ".join(rng.choices(vocabulary, k=max(1, len(text.split()) - 1))) + " ." for name, text in q.items()}
        for q in in_domain
    ]
    return in_domain, english


def vanilla_label_bias(backend: Backend, zero_shot: ICLPrompt, inputs: Sequence[str] = VANILLA_INPUTS) -> BiasEstimate:
    """TV distance from uniform of the content-free prior of a prompt with no demonstrations."""
    return vanilla_label_bias_from_log_probs(vanilla_log_probs(backend, zero_shot, inputs))


def context_label_bias(
    backend: Backend, prompts: Sequence[ICLPrompt], inputs: Sequence[str] = CONTENT_FREE_INPUTS
) -> BiasEstimate:
    """Mean TV between the content-free priors of every pair of ``prompts`` (the same task with
    independently drawn demonstration sets)."""
    if len(prompts) < 2:
        raise InvalidRequestError("context-label bias compares at least two demonstration sets or orders")
    return context_label_bias_from_log_probs(content_free_log_probs(backend, prompts, inputs))


def english_words(n: int = 5000) -> list[str]:
    """The ``n`` most frequent English words (wordfreq), lower-case."""
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", n) if w.isalpha()]


def domain_label_bias(
    backend: Backend,
    prompt: ICLPrompt,
    inputs: Sequence[Query],
    n_samples: int = DOMAIN_SAMPLES,
    seed: int = 0,
) -> BiasEstimate:
    """KL(prior from random in-domain words ‖ prior from random English words), same lengths and prompt."""
    in_domain, english = domain_queries(prompt, inputs, n_samples, seed)
    return domain_label_bias_from_log_probs(
        prompt.label_log_probs(backend, in_domain), prompt.label_log_probs(backend, english)
    )
