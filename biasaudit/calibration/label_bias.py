"""How biased is the label choice? The three label-bias types of Fei et al. (ACL 2023), plus skews.

* **Vanilla-label bias** — preference for label names with no context at all: the label distribution
  for content-free inputs in a zero-shot prompt, as total-variation distance from uniform.
* **Context-label bias** — preference induced by the demonstrations (their labels, order, recency):
  how far the content-free prior moves across demonstration sets and orders (mean TV distance of each
  prompt's prior from their average).
* **Domain-label bias** — preference induced by the task's vocabulary: KL(p_in-domain ‖ p_English),
  priors from random strings of in-domain words vs of common English words (wordfreq's list), same
  lengths, same prompt. Large where the domain words alone push towards a label.
* **Predicted-label skew** — TV distance between predicted and gold label histograms.
* **Recall spread** — max minus min per-class recall.

Each comes with a 95% percentile-bootstrap interval (``biasaudit.stats.bootstrap_ci``) over its own
sampling unit (content-free inputs, prompts, random strings, test examples).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.calibration.contextual import CONTENT_FREE_INPUTS
from biasaudit.calibration.domain_context import DomainContextCalibrator
from biasaudit.calibration.prompt import ICLPrompt, Query, softmax_rows
from biasaudit.stats import bootstrap_ci

# More content-free inputs than calibration needs, so the vanilla estimate has an interval.
VANILLA_INPUTS = (*CONTENT_FREE_INPUTS, "?", "...", "none", "null", "-", "text", "input")


@dataclass
class BiasEstimate:
    """A measurement with its 95% bootstrap interval (None when too few units for one)."""

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


def _ci(values: np.ndarray, statistic, seed: int) -> tuple[float, float] | None:
    return bootstrap_ci(values, statistic, seed=seed) if len(values) >= 2 else None


def vanilla_label_bias(
    backend: Backend, zero_shot: ICLPrompt, inputs: Sequence[str] = VANILLA_INPUTS, seed: int = 0
) -> BiasEstimate:
    """TV distance from uniform of the mean label distribution for content-free inputs, no demonstrations."""
    probs = softmax_rows(zero_shot.label_log_probs(backend, [zero_shot.uniform(t) for t in inputs]))
    uniform = np.full(probs.shape[1], 1.0 / probs.shape[1])

    def stat(rows: np.ndarray) -> float:
        return tv_distance(rows.mean(axis=0), uniform)

    return BiasEstimate(stat(probs), _ci(probs, stat, seed), len(probs), {"prior": probs.mean(axis=0).tolist()})


def context_label_bias(
    backend: Backend, prompts: Sequence[ICLPrompt], inputs: Sequence[str] = CONTENT_FREE_INPUTS, seed: int = 0
) -> BiasEstimate:
    """Mean TV distance of each prompt's content-free prior from the average prior over ``prompts``.

    ``prompts`` are the same task with different demonstration sets and/or orders.
    """
    if len(prompts) < 2:
        raise ValueError("context-label bias compares at least two demonstration sets or orders")
    priors = np.stack(
        [softmax_rows(p.label_log_probs(backend, [p.uniform(t) for t in inputs])).mean(axis=0) for p in prompts]
    )

    def stat(rows: np.ndarray) -> float:
        centre = rows.mean(axis=0)
        return float(np.mean([tv_distance(r, centre) for r in rows]))

    return BiasEstimate(stat(priors), _ci(priors, stat, seed), len(priors), {"priors": priors.tolist()})


def english_words(n: int = 5000) -> list[str]:
    """The ``n`` most frequent English words (wordfreq), lower-case."""
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", n) if w.isalpha()]


def domain_label_bias(
    backend: Backend,
    prompt: ICLPrompt,
    inputs: Sequence[Query],
    n_samples: int = 20,
    seed: int = 0,
) -> BiasEstimate:
    """KL(prior from random in-domain words ‖ prior from random English words), same lengths and prompt."""
    in_domain = DomainContextCalibrator(n_samples=n_samples, seed=seed).sample_queries(prompt, inputs)
    vocabulary = english_words()
    rng = random.Random(seed + 1)
    english = [
        {name: " ".join(rng.choices(vocabulary, k=max(1, len(text.split()) - 1))) + " ." for name, text in q.items()}
        for q in in_domain
    ]
    raw_domain = np.exp(prompt.label_log_probs(backend, in_domain))
    raw_english = np.exp(prompt.label_log_probs(backend, english))

    def stat(rows: np.ndarray) -> float:
        k = rows.shape[1] // 2
        p = rows[:, :k].mean(axis=0)
        q = rows[:, k:].mean(axis=0)
        return kl_divergence(p / p.sum(), q / q.sum())

    paired = np.concatenate([raw_domain, raw_english], axis=1)
    k = raw_domain.shape[1]
    detail = {
        "prior_in_domain": (raw_domain.mean(0) / raw_domain.mean(0).sum()).tolist(),
        "prior_english": (raw_english.mean(0) / raw_english.mean(0).sum()).tolist(),
        "n_labels": k,
    }
    return BiasEstimate(stat(paired), _ci(paired, stat, seed), n_samples, detail)


def predicted_label_skew(pred: Sequence[int], gold: Sequence[int], n_labels: int, seed: int = 0) -> BiasEstimate:
    """TV distance between the predicted and gold label histograms."""
    pairs = np.stack([np.asarray(pred), np.asarray(gold)], axis=1)

    def stat(rows: np.ndarray) -> float:
        hist_pred = np.bincount(rows[:, 0], minlength=n_labels) / len(rows)
        hist_gold = np.bincount(rows[:, 1], minlength=n_labels) / len(rows)
        return tv_distance(hist_pred, hist_gold)

    return BiasEstimate(stat(pairs), _ci(pairs, stat, seed), len(pairs))


def recall_spread(pred: Sequence[int], gold: Sequence[int], n_labels: int, seed: int = 0) -> BiasEstimate:
    """Max minus min per-class recall (classes absent from a resample are skipped in it)."""
    pairs = np.stack([np.asarray(pred), np.asarray(gold)], axis=1)

    def stat(rows: np.ndarray) -> float:
        recalls = [np.mean(rows[rows[:, 1] == c, 0] == c) for c in range(n_labels) if np.any(rows[:, 1] == c)]
        return float(max(recalls) - min(recalls)) if recalls else math.nan

    per_class = {
        c: float(np.mean(pairs[pairs[:, 1] == c, 0] == c)) for c in range(n_labels) if np.any(pairs[:, 1] == c)
    }
    return BiasEstimate(stat(pairs), _ci(pairs, stat, seed), len(pairs), {"recall": per_class})
