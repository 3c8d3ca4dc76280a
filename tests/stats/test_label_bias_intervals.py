"""The label-bias intervals (biasaudit.calibration.label_bias) against a known truth.

Each check simulates the label probabilities a measurement consumes, numpy-level: raw (unnormalised)
label probabilities of content-free inputs, of random strings, of test items, drawn around a known
population prior, and runs the package's own ``*_from_log_probs`` / skew functions on them. The truth is
the population value of the measurement (its limit as the units grow), computed from 200,000 draws.
A planted effect checks power: how often the interval excludes "no bias" (0).

The sizes match the protocol's: 30 content-free inputs (vanilla), 20 demonstration sets of 3
content-free inputs (context), 40 paired random strings (domain), 500 or 56 test items (skews).
"""

from __future__ import annotations

import numpy as np
import pytest
from stats_harness import MIN_COVERAGE, interval_coverage, n_datasets, rejection_rate

from biasaudit.calibration.label_bias import (
    CONTEXT_PROMPTS,
    DOMAIN_SAMPLES,
    VANILLA_INPUTS,
    context_label_bias_from_log_probs,
    domain_label_bias_from_log_probs,
    predicted_label_skew,
    recall_spread,
    vanilla_label_bias_from_log_probs,
)

N_DATA = 200
BIG = 200_000


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _prior(raw: np.ndarray) -> np.ndarray:
    mean = raw.mean(axis=-2)
    return mean / mean.sum(axis=-1, keepdims=True)


def _tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(p - q).sum(axis=-1)


def _raw(rng: np.random.Generator, logits: np.ndarray, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """Raw label probabilities: a label distribution around softmax(logits), times the mass the labels get."""
    k = logits.shape[-1]
    mass = rng.uniform(0.05, 0.9, size=(*shape, 1))
    return mass * _softmax(logits + sigma * rng.standard_normal((*shape, k)))


def _excludes_zero(interval: tuple[float, float] | None) -> float:
    """A p-value stand-in for the harness: 0 when the interval excludes "no bias", else 1."""
    return 0.0 if interval is not None and interval[0] > 0 else 1.0


# ------------------------------------------------------------------------------------------ vanilla
VANILLA_CASES = {
    "2 labels, small bias": (np.array([0.2, 0.0]), 0.5),
    "6 labels, moderate bias": (np.array([0.0, 0.3, 0.6, 0.9, 0.2, 0.1]), 0.5),
    "6 labels, small bias": (np.array([0.0, 0.1, 0.2, 0.1, 0.0, 0.05]), 0.5),
    "4 labels, none": (np.zeros(4), 0.5),
}


@pytest.mark.parametrize("case", list(VANILLA_CASES))
def test_vanilla_label_bias_interval_covers_the_population_tv(case):
    logits, sigma = VANILLA_CASES[case]
    uniform = np.full(len(logits), 1.0 / len(logits))
    truth = float(_tv(_prior(_raw(np.random.default_rng(9), logits, sigma, (BIG,))), uniform))

    def draw(rng):
        estimate = vanilla_label_bias_from_log_probs(np.log(_raw(rng, logits, sigma, (len(VANILLA_INPUTS),))))
        return estimate.ci95, estimate.value

    check = interval_coverage(f"vanilla label bias, {case}", draw, truth, n=n_datasets(N_DATA), seed=1)
    assert check.n_missing == 0
    assert check.coverage >= MIN_COVERAGE, check


def test_vanilla_label_bias_power():
    logits, sigma = np.array([0.5, 0.0]), 0.5

    def draw_p(rng):
        return _excludes_zero(vanilla_label_bias_from_log_probs(np.log(_raw(rng, logits, sigma, (30,)))).ci95)

    check = rejection_rate("vanilla label bias, 2 labels, TV 0.11", draw_p, n=n_datasets(N_DATA), kind="power")
    assert check.rate >= 0.8, check


# ------------------------------------------------------------------------------------------ context
CONTEXT_CASES = {
    "2 labels": (2, 0.5, 0.3),
    "4 labels": (4, 0.5, 0.3),
    "6 labels, large": (6, 1.0, 0.5),
    "3 labels, small": (3, 0.05, 0.02),
}


def _context_log_probs(rng, k: int, tau: float, sigma: float, n_prompts: int) -> np.ndarray:
    """(n_prompts, 3, K): each demonstration set moves the logits by tau * z; each content-free input by sigma * e."""
    logits = np.linspace(0.0, 0.5, k) + tau * rng.standard_normal((n_prompts, 1, k))
    return np.log(_raw(rng, logits, sigma, (n_prompts, 3)))


@pytest.mark.parametrize("case", list(CONTEXT_CASES))
def test_context_label_bias_interval_covers_the_population_mean_pairwise_tv(case):
    k, tau, sigma = CONTEXT_CASES[case]
    priors = _prior(np.exp(_context_log_probs(np.random.default_rng(5), k, tau, sigma, BIG)))
    truth = float(_tv(priors[0::2], priors[1::2]).mean())  # E TV(P, P') for two independent demonstration sets

    def draw(rng):
        estimate = context_label_bias_from_log_probs(_context_log_probs(rng, k, tau, sigma, CONTEXT_PROMPTS))
        return estimate.ci95, estimate.value

    check = interval_coverage(f"context label bias, {case}", draw, truth, n=n_datasets(N_DATA), seed=3)
    assert check.coverage >= MIN_COVERAGE, check
    assert abs(check.mean_estimate - truth) < 0.05 * truth + 1e-3  # the U-statistic is unbiased


def test_context_label_bias_power():
    def draw_p(rng):
        return _excludes_zero(context_label_bias_from_log_probs(_context_log_probs(rng, 2, 0.05, 0.02, 20)).ci95)

    check = rejection_rate("context label bias, 2 labels, TV 0.02", draw_p, n=n_datasets(N_DATA), kind="power")
    assert check.rate >= 0.8, check


# ------------------------------------------------------------------------------------------- domain
DOMAIN_CASES = {
    "2 labels, none": (2, 0.0),
    "2 labels, small": (2, 0.15),
    "3 labels": (3, 0.3),
    "6 labels": (6, 0.4),
}


def _domain_log_probs(rng, k: int, shift: float, n: int, sigma: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Paired rows: the English string and the in-domain one share a length (a common logit component);
    the in-domain words move label 0's logit by ``shift``."""
    english_logits = np.linspace(0.0, 0.3, k)
    domain_logits = english_logits + shift * np.eye(k)[0]
    shared = sigma * rng.standard_normal((n, k))
    return (
        np.log(_raw(rng, domain_logits + shared, sigma, (n,))),
        np.log(_raw(rng, english_logits + shared, sigma, (n,))),
    )


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q)))


@pytest.mark.parametrize("case", list(DOMAIN_CASES))
def test_domain_label_bias_interval_covers_the_population_kl(case):
    k, shift = DOMAIN_CASES[case]
    domain, english = _domain_log_probs(np.random.default_rng(7), k, shift, BIG)
    truth = _kl(_prior(np.exp(domain)), _prior(np.exp(english)))

    def draw(rng):
        estimate = domain_label_bias_from_log_probs(*_domain_log_probs(rng, k, shift, DOMAIN_SAMPLES))
        return estimate.ci95, estimate.value

    check = interval_coverage(f"domain label bias, {case}", draw, truth, n=n_datasets(N_DATA), seed=4)
    assert check.coverage >= MIN_COVERAGE, check


def test_domain_label_bias_power():
    def draw_p(rng):
        return _excludes_zero(domain_label_bias_from_log_probs(*_domain_log_probs(rng, 2, 0.6, DOMAIN_SAMPLES)).ci95)

    check = rejection_rate("domain label bias, 2 labels, KL 0.03", draw_p, n=n_datasets(N_DATA), kind="power")
    assert check.rate >= 0.8, check


# ------------------------------------------------------------------------------- skew and spread
SKEW_CASES = {
    "6 classes, calibrated": (np.array([0.2, 0.2, 0.15, 0.15, 0.15, 0.15]), 0.8, 0.0, 500),
    "6 classes, pulled to class 0": (np.array([0.2, 0.2, 0.15, 0.15, 0.15, 0.15]), 0.8, 0.3, 500),
    "2 classes": (np.array([0.5, 0.5]), 0.8, 0.02, 500),
    "3 classes, 56 items": (np.array([0.4, 0.5, 0.1]), 0.5, 0.1, 56),
}


def _confusion(k: int, diagonal: float, pull: float) -> np.ndarray:
    """P(predicted | gold): ``diagonal`` on the diagonal, the rest spread evenly, then ``pull`` towards class 0."""
    conf = np.full((k, k), (1.0 - diagonal) / (k - 1))
    np.fill_diagonal(conf, diagonal)
    conf[:, 0] += pull
    return conf / conf.sum(axis=1, keepdims=True)


def _predictions(rng, gold_share: np.ndarray, conf: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    gold = rng.choice(len(gold_share), size=n, p=gold_share)
    pred = (rng.random(n)[:, None] > conf[gold].cumsum(axis=1)).sum(axis=1)
    return pred, gold


@pytest.mark.parametrize("case", list(SKEW_CASES))
def test_predicted_label_skew_and_recall_spread_intervals_cover_their_population_values(case):
    gold_share, diagonal, pull, n = SKEW_CASES[case]
    k = len(gold_share)
    conf = _confusion(k, diagonal, pull)
    skew_truth = float(_tv(gold_share @ conf, gold_share))
    spread_truth = float(np.ptp(np.diag(conf)))

    def draw_skew(rng):
        estimate = predicted_label_skew(*_predictions(rng, gold_share, conf, n), k)
        return estimate.ci95, estimate.value

    def draw_spread(rng):
        estimate = recall_spread(*_predictions(rng, gold_share, conf, n), k)
        return estimate.ci95, estimate.value

    skew = interval_coverage(f"predicted-label skew, {case}", draw_skew, skew_truth, n=n_datasets(N_DATA), seed=6)
    spread = interval_coverage(f"recall spread, {case}", draw_spread, spread_truth, n=n_datasets(N_DATA), seed=6)
    assert skew.coverage >= MIN_COVERAGE, skew
    assert spread.coverage >= MIN_COVERAGE, spread


def test_skew_and_spread_power():
    gold_share = np.array([0.5, 0.5])
    conf = np.array([[0.85, 0.15], [0.35, 0.65]])  # recall 0.85 vs 0.65; predicts class 0 60% of the time

    def skew_p(rng):
        return _excludes_zero(predicted_label_skew(*_predictions(rng, gold_share, conf, 500), 2).ci95)

    def spread_p(rng):
        return _excludes_zero(recall_spread(*_predictions(rng, gold_share, conf, 500), 2).ci95)

    skew = rejection_rate("predicted-label skew, TV 0.10, 500 items", skew_p, n=n_datasets(N_DATA), kind="power")
    spread = rejection_rate("recall spread 0.20, 500 items", spread_p, n=n_datasets(N_DATA), kind="power")
    assert skew.rate >= 0.8, skew
    assert spread.rate >= 0.8, spread
