"""The LVLM path on the real default model: SmolLM2-135M-Instruct grafted into a LLaVA as its language model.

Only the tiny vision tower and projector are random, so the image-free answers are SmolLM2's own: the
VLM backend's text-only scores must equal the text backend's on the same prompts, and a full evaluation
(blind prior, post-hoc debias, debiased decoding) runs on real weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biasaudit.backend.vlm import VLMBackend
from biasaudit.lvlm import LVLMEvaluator, make_probe
from biasaudit.lvlm.tiny_models import build_tiny_vlm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol_llava(tmp_path_factory, default_model_dir) -> VLMBackend:
    folder = build_tiny_vlm("llava", tmp_path_factory.mktemp("smol_llava"), language_model=default_model_dir)
    return VLMBackend.from_spec(str(folder), progress=False)


def test_image_free_scores_are_the_language_models(smol_llava, default_backend):
    items = make_probe("pope", 6, seed=4)
    questions = [it.question for it in items]
    vlm_scores = smol_llava.label_log_probs(questions, ["Yes", "No"])  # no images: text-only rows, batched
    yes, no = (smol_llava.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("Yes", "No"))
    for i, question in enumerate(questions):
        ids = smol_llava.processor(text=[smol_llava.format_prompt(question, "none")], return_tensors="pt").input_ids
        with torch.inference_mode():
            logits = default_backend.model(input_ids=ids).logits[0, -1].float()
        expected = torch.log_softmax(logits, -1)[[yes, no]].numpy()
        # The VLM's vocabulary has one more (image) token, which takes a sliver of the probability mass.
        np.testing.assert_allclose(vlm_scores[i], expected, atol=1e-3)


def test_full_evaluation_on_real_weights(smol_llava):
    items = make_probe("pope", 12, seed=4)
    ev = LVLMEvaluator(mitigations=["none", "posthoc", "sampling"]).fit(smol_llava, items)
    for method in ("blind", "none", "posthoc", "greedy", "sampling"):
        metrics = ev.results_[method]["all"]
        assert metrics["n"] == 12 and 0.0 <= metrics["accuracy"] <= 1.0
    from biasaudit.lvlm.evaluate import parse_answer

    unparsed = [parse_answer(p["greedy_text"], ["Yes", "No"]) is None for p in ev.predictions_]
    assert ev.results_["greedy"]["all"]["parse_failure_rate"] == pytest.approx(np.mean(unparsed))
