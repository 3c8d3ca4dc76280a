"""Label-bias measurements: known answers from scripted label distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biasaudit.calibration import ICLPrompt
from biasaudit.calibration.label_bias import (
    context_label_bias,
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


def test_vanilla_bias_is_tv_from_uniform_of_the_mean_content_free_distribution(scripted):
    backend = scripted(lambda p, labels: np.log([0.2, 0.6]))  # renormalised: [0.25, 0.75]
    estimate = vanilla_label_bias(backend, ZERO_SHOT, inputs=["N/A", "", "?"])
    assert estimate.value == pytest.approx(0.25)
    assert estimate.ci95 == pytest.approx((0.25, 0.25)) and estimate.n == 3
    assert backend.calls[0]["prompts"] == ["Review: N/A\nSentiment:", "Review: \nSentiment:", "Review: ?\nSentiment:"]


def test_context_bias_measures_how_far_priors_move_across_demonstrations(scripted):
    prompts = [ICLPrompt(ZERO_SHOT.query_template, ZERO_SHOT.labels, prefix=f"demo {i}\n\n") for i in range(2)]
    backend = scripted(lambda p, labels: np.log([0.9, 0.1]) if p.startswith("demo 0") else np.log([0.3, 0.7]))
    estimate = context_label_bias(backend, prompts)
    assert estimate.value == pytest.approx(0.3)  # both priors sit 0.3 (TV) from their mean [0.6, 0.4]
    same = scripted(lambda p, labels: np.log([0.9, 0.1]))
    assert context_label_bias(same, prompts).value == pytest.approx(0.0)
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
