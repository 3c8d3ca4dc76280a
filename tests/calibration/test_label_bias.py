"""Label-bias measurements: known answers from scripted label distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biasaudit.calibration import ICLPrompt
from biasaudit.calibration.label_bias import (
    VANILLA_INPUTS,
    context_label_bias,
    context_label_bias_from_log_probs,
    domain_label_bias,
    english_words,
    kl_divergence,
    predicted_label_skew,
    recall_spread,
    tv_distance,
    vanilla_label_bias,
)

ZERO_SHOT = ICLPrompt("Review: {text}\nSentiment:", (" negative", " positive"))


def test_distances():
    assert tv_distance([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4)
    assert kl_divergence([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert kl_divergence([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))


def test_vanilla_bias_is_tv_from_uniform_of_the_content_free_prior(scripted):
    rows = {"N/A": [0.2, 0.6], "": [0.02, 0.02], "?": [0.1, 0.1]}  # raw mean [0.32, 0.72] / 3 -> [0.3077, 0.6923]
    backend = scripted(lambda p, labels: np.log(rows[p[len("Review: ") : -len("\nSentiment:")]]))
    estimate = vanilla_label_bias(backend, ZERO_SHOT, inputs=["N/A", "", "?"])
    assert estimate.value == pytest.approx(0.72 / 1.04 - 0.5)  # the same prior as contextual calibration's
    assert estimate.detail["prior"] == pytest.approx([0.32 / 1.04, 0.72 / 1.04])
    assert estimate.n == 3
    assert backend.calls[0]["prompts"] == ["Review: N/A\nSentiment:", "Review: \nSentiment:", "Review: ?\nSentiment:"]
    assert len(VANILLA_INPUTS) == len(set(VANILLA_INPUTS)) == 30


def test_context_bias_is_the_mean_tv_between_the_priors_of_two_demonstration_sets(scripted):
    priors = {0: [0.9, 0.1], 1: [0.3, 0.7], 2: [0.6, 0.4]}
    prompts = [ICLPrompt(ZERO_SHOT.query_template, ZERO_SHOT.labels, prefix=f"demo {i}\n\n") for i in range(3)]
    backend = scripted(lambda p, labels: np.log(priors[int(p[5])]))
    estimate = context_label_bias(backend, prompts)
    assert estimate.value == pytest.approx((0.6 + 0.3 + 0.3) / 3)  # TV over the 3 pairs of sets
    assert estimate.n == 3 and estimate.ci95 is not None and estimate.ci95[0] >= 0
    same = scripted(lambda p, labels: np.log([0.9, 0.1]))
    assert context_label_bias(same, prompts).value == pytest.approx(0.0)
    assert context_label_bias(same, prompts).ci95 == pytest.approx((0.0, 0.0))
    order = np.log([[[0.9, 0.1]] * 3, [[0.7, 0.3]] * 3])
    with_order = context_label_bias_from_log_probs(np.log([[[0.9, 0.1]] * 3, [[0.3, 0.7]] * 3]), order)
    assert with_order.detail["order_shift"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least two"):
        context_label_bias(backend, prompts[:1])


def test_domain_bias_is_kl_between_in_domain_and_english_word_priors(scripted):
    inputs = ["zorblax frumious vorpal", "vorpal zorblax"]
    in_domain = {"zorblax", "frumious", "vorpal"}

    def fn(prompt, labels):
        words = set(prompt.split("Review: ")[1].split("\n")[0].split())
        return np.log([0.8, 0.2]) if words & in_domain else np.log([0.4, 0.4])

    estimate = domain_label_bias(scripted(fn), ZERO_SHOT, inputs, n_samples=6)
    assert estimate.value == pytest.approx(kl_divergence([0.8, 0.2], [0.5, 0.5]))
    assert estimate.detail["prior_english"] == pytest.approx([0.5, 0.5])
    assert len(english_words()) > 3000 and "the" in english_words()


def test_predicted_skew_and_recall_spread():
    gold = [0, 0, 1, 1, 2, 2]
    pred = [0, 0, 0, 1, 0, 2]
    skew = predicted_label_skew(pred, gold, 3)
    assert skew.value == pytest.approx(0.5 * (abs(4 / 6 - 2 / 6) + abs(1 / 6 - 2 / 6) + abs(1 / 6 - 2 / 6)))
    spread = recall_spread(pred, gold, 3)
    assert spread.value == pytest.approx(1.0 - 0.5)
    assert spread.detail == {"recall": {0: 1.0, 1: 0.5, 2: 0.5}}
    low, high = spread.ci95
    assert 0.0 <= low <= high <= 1.0
