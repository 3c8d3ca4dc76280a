"""Post-hoc debias on a constructed LVLM whose answer the image decides but whose LM head says "Yes".

The tiny LLaVA is first taught (a few seconds of training) to answer a small POPE probe from the image,
and to be undecided (50/50) when the image is missing; then a bias on the LM head's "Yes" logit gives it a
strong language prior. With the image it now says Yes to everything; post-hoc debias against the no-image
reference must bring back both the image's answers and a balanced yes-ratio.

The authors' code adds 1e-4 to the reference probabilities (our default), which caps the correction at
log(1e4) = 9.2 nats. A +13 prior (image evidence here: 8-12 nats) is then divided out far enough for the image
to win again; a +40 prior is not -- only ``posthoc_epsilon=0`` (exact division) removes it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biasaudit.backend.vlm import VLMBackend
from biasaudit.lvlm.evaluate import LVLMEvaluator
from biasaudit.lvlm.posthoc import PostHocDebias, label_distribution
from biasaudit.lvlm.probe import make_pope_probe

# Both larger than any margin the teaching leaves (8-12 nats), so the prior wins on every question.
MODERATE_BIAS = 13.0  # needs 13 nats of correction: the authors' 9.2 leave 3.8, less than the image's evidence
STRONG_BIAS = 40.0  # leaves 30.8 after the authors' correction: only exact division removes it


def _teach(backend: VLMBackend, items, steps: int = 150) -> None:
    """Fit the answer token: gold Yes/No with the image, 50/50 without it (full batch, Adam, seeded)."""
    torch.manual_seed(0)
    model = backend.model
    model.requires_grad_(True)
    yes, no = (backend.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("Yes", "No"))
    questions = [it.question for it in items]
    images = [it.image for it in items]
    real = backend._encode(backend._rows(questions, images, "image"))
    blind = backend._encode(backend._rows(questions, images, "none"))
    gold = torch.tensor([0 if it.answer == "Yes" else 1 for it in items])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        optimiser.zero_grad()
        with torch.enable_grad():
            two_way_real = model(**real, logits_to_keep=1).logits[:, -1, [yes, no]].log_softmax(-1)
            two_way_blind = model(**blind, logits_to_keep=1).logits[:, -1, [yes, no]].log_softmax(-1)
            loss = torch.nn.functional.nll_loss(two_way_real, gold) - two_way_blind.mean()
            loss.backward()
        optimiser.step()
    model.requires_grad_(False)


def _add_yes_bias(backend: VLMBackend, bias: float) -> None:
    """Replace the LM head by one with a bias that adds ``bias`` to the "Yes" logit (a pure language prior)."""
    model = backend.model
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    biased.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    yes = backend.tokenizer("Yes", add_special_tokens=False).input_ids[0]
    with torch.no_grad():
        biased.bias.zero_()
        biased.bias[yes] = bias
    biased.requires_grad_(False)
    model.lm_head = biased


@pytest.fixture(scope="module")
def taught(tiny_vlm_dirs):
    items = make_pope_probe(24, split="random", seed=3, image_size=64)
    backend = VLMBackend.from_spec(str(tiny_vlm_dirs["llava"]), progress=False)
    _teach(backend, items)
    before = LVLMEvaluator(mitigations=["none"]).fit(backend, items).results_
    blind = backend.label_log_probs_by_input(
        [it.question for it in items], ["Yes", "No"], [it.image for it in items], ("none",)
    )
    before["blind_p_yes"] = label_distribution(blind["none"], log_probs=True)[:, 0]
    return backend, items, before


def test_construction_answers_from_the_image_before_the_bias(taught):
    _, _, before = taught
    assert before["none"]["all"]["accuracy"] >= 0.9
    assert before["blind_p_yes"].min() > 0.35 and before["blind_p_yes"].max() < 0.65  # undecided without the image


@pytest.mark.parametrize(("bias", "epsilon"), [(MODERATE_BIAS, None), (STRONG_BIAS, 0.0)])
def test_posthoc_debias_removes_the_yes_prior(taught, bias, epsilon):
    backend, items, _ = taught
    _add_yes_bias(backend, bias)
    res = LVLMEvaluator(mitigations=["none", "posthoc"], posthoc_epsilon=epsilon).fit(backend, items).results_
    # The prior wins everywhere: Yes to every question, with or without the image.
    assert res["none"]["all"]["yes_ratio"] == 1.0 and res["blind"]["all"]["yes_ratio"] == 1.0
    assert res["none"]["all"]["accuracy"] == 0.5
    # Dividing by the no-image reference gives the image its say back.
    assert res["posthoc"]["all"]["accuracy"] >= 0.9
    assert 0.35 <= res["posthoc"]["all"]["yes_ratio"] <= 0.65
    change = res["posthoc"]["all"]["accuracy_change"]
    assert change["vs"] == "none" and change["delta"] >= 0.4 and change["ci"][0] > 0


def test_authors_epsilon_leaves_a_very_strong_prior(taught):
    # The authors' 1e-4 (the default) cannot undo e^40 : 1; this is their code's behaviour, kept on purpose.
    backend, items, _ = taught
    _add_yes_bias(backend, STRONG_BIAS)
    res = LVLMEvaluator(mitigations=["none", "posthoc"]).fit(backend, items).results_
    assert res["posthoc"]["all"]["yes_ratio"] == 1.0 and res["posthoc"]["all"]["accuracy"] == 0.5


def test_dataset_prior_balances_no_image_answers(taught):
    backend, items, _ = taught
    _add_yes_bias(backend, STRONG_BIAS)  # the authors' dataset prior adds no epsilon: exact division
    questions, images = [it.question for it in items], [it.image for it in items]
    log_probs = backend.label_log_probs_by_input(questions, ["Yes", "No"], images, ("none",))["none"]
    probs = label_distribution(log_probs, log_probs=True)
    assert (probs.argmax(axis=1) == 0).all()  # all Yes before
    debias = PostHocDebias(references=("none",), mode="dataset").fit({"none": probs})
    yes_ratio = float(np.mean(debias.predict(probs) == 0))
    assert 0.3 <= yes_ratio <= 0.7
