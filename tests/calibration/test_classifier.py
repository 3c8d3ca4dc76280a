"""ICLClassifier and the decode-time prior, on the tiny model and on the real default model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biasaudit.calibration import ContextualCalibrator, DomainContextCalibrator, NoCalibration, PriorMismatchError
from biasaudit.calibration.classifier import ICLClassifier
from biasaudit.calibration.logits_processor import LabelPriorLogitsProcessor
from biasaudit.calibration.prompt import build_icl_prompt
from biasaudit.errors import InvalidRequestError, LabelCollisionError

TEMPLATE = "Review: {text}\nSentiment: {label}"
LABELS = ["negative", "positive"]
DEMOS = [
    ("a warm, funny and moving film", "positive"),
    ("dull, slow and far too long", "negative"),
    ("the cast is wonderful", 1),
    ("i wanted my money back", 0),
]
REVIEWS = ["loved every minute", "a tedious mess", "fine, i suppose", "the best film this year", "boring"]


def test_prompt_building_is_exact():
    prompt = build_icl_prompt(TEMPLATE, LABELS, DEMOS[:2], instruction="Classify the sentiment.")
    assert prompt.prefix == (
        "Classify the sentiment.\n\n"
        "Review: a warm, funny and moving film\nSentiment: positive\n\n"
        "Review: dull, slow and far too long\nSentiment: negative\n\n"
    )
    assert prompt.fill("great") == prompt.prefix + "Review: great\nSentiment:"
    assert prompt.labels == (" negative", " positive")
    with pytest.raises(InvalidRequestError, match="label"):
        build_icl_prompt("Review: {text}", LABELS)
    with pytest.raises(InvalidRequestError, match="not one of"):
        build_icl_prompt(TEMPLATE, LABELS, [("x", "neutral")])


def test_classifier_predicts_label_words_and_batches_like_single_calls(tiny_backend):
    clf = ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS, DomainContextCalibrator(n_samples=5)).fit(REVIEWS)
    batched = clf.predict_proba(REVIEWS)
    single = np.concatenate([clf.predict_proba([r]) for r in REVIEWS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert clf.predict(REVIEWS) == [LABELS[i] for i in batched.argmax(axis=1)]
    raw = clf.predict_proba(REVIEWS, calibrated=False)
    np.testing.assert_allclose(batched, clf.calibrator_.transform(raw), atol=1e-10)


def test_classifier_refuses_a_prior_for_other_labels(tiny_backend):
    other = NoCalibration().fit(tiny_backend, build_icl_prompt(TEMPLATE, ["bad", "good"]))
    with pytest.raises(PriorMismatchError, match="labels"):
        ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS).use_prior(other)
    with pytest.raises(InvalidRequestError, match="fit"):
        ICLClassifier(tiny_backend, TEMPLATE, LABELS, DEMOS).predict(REVIEWS)


def test_colliding_first_tokens_are_refused_and_full_sequence_works(tiny_backend):
    labels = ["good", "good!"]
    with pytest.raises(LabelCollisionError, match="full_sequence"):
        ICLClassifier(tiny_backend, TEMPLATE, labels).fit().predict(REVIEWS)
    clf = ICLClassifier(tiny_backend, TEMPLATE, labels, mode="full_sequence").fit()
    assert clf.predict_proba(REVIEWS).shape == (len(REVIEWS), 2)


def test_logits_processor_applies_the_prior_on_the_first_step_only():
    processor = LabelPriorLogitsProcessor([3, 5], [0.9, 0.1])
    scores = torch.tensor([[0.0, 0.0, 0.0, 2.0, 0.0, 0.5, 9.0]])
    out = processor(torch.zeros((1, 4), dtype=torch.long), scores.clone())
    assert torch.isinf(out[0, [0, 1, 2, 4, 6]]).all()  # only labels remain
    p = torch.softmax(out[0, [3, 5]], dim=0).numpy()
    raw = np.exp([2.0, 0.5]) / np.exp([2.0, 0.5]).sum()
    np.testing.assert_allclose(p, (raw / [0.9, 0.1]) / (raw / [0.9, 0.1]).sum(), rtol=1e-6)
    later = processor(torch.zeros((1, 5), dtype=torch.long), scores.clone())
    assert torch.equal(later, scores)
    with pytest.raises(LabelCollisionError):
        LabelPriorLogitsProcessor([3, 3], [0.5, 0.5])


@pytest.mark.slow
def test_default_model_greedy_generate_with_the_prior_picks_the_calibrated_label(default_backend):
    clf = ICLClassifier(default_backend, TEMPLATE, LABELS, DEMOS, ContextualCalibrator()).fit()
    # A strongly skewed prior makes the calibrated and the raw choice differ somewhere.
    clf.calibrator_.prior_ = np.array([0.15, 0.85])
    expected = clf.predict(REVIEWS)
    assert expected != [LABELS[i] for i in clf.predict_proba(REVIEWS, calibrated=False).argmax(1)]
    processor = LabelPriorLogitsProcessor.from_calibrator(clf.calibrator_, default_backend.tokenizer)
    prompts = [clf.prompt_.fill(r) for r in REVIEWS]
    generated = default_backend.generate(prompts, max_new_tokens=1, logits_processors=[processor])
    assert [g.strip() for g in generated] == expected


def test_one_processor_calibrates_the_first_step_of_every_call_whatever_the_prompt_length():
    processor = LabelPriorLogitsProcessor([3, 5], [0.9, 0.1])
    scores = torch.tensor([[0.0, 0.0, 0.0, 2.0, 0.0, 0.5, 9.0]])
    prompt_10 = torch.arange(10).unsqueeze(0)
    first = processor(prompt_10, scores.clone())
    assert torch.isinf(first[0, 6])  # calibrated: only the labels remain
    step_2 = processor(torch.cat([prompt_10, torch.tensor([[3]])], dim=1), scores.clone())
    assert torch.equal(step_2, scores)  # the same call's second step is left alone
    prompt_12 = torch.arange(100, 112).unsqueeze(0)  # a new call with a longer prompt
    again = processor(prompt_12, scores.clone())
    assert torch.equal(again, first)
    assert torch.equal(processor(torch.cat([prompt_12, torch.tensor([[5]])], dim=1), scores.clone()), scores)
    shorter = processor(torch.arange(50, 58).unsqueeze(0), scores.clone())
    assert torch.equal(shorter, first)
    processor.reset()
    assert torch.equal(processor(torch.cat([prompt_12, torch.tensor([[5]])], dim=1), scores.clone()), first)


def test_beam_reordered_rows_are_still_the_same_generation():
    processor = LabelPriorLogitsProcessor([3, 5], [0.5, 0.5])
    scores = torch.zeros((2, 7))
    prompt = torch.tensor([[1, 2, 3], [1, 2, 4]])
    processor(prompt, scores.clone())
    swapped = torch.tensor([[1, 2, 4, 6], [1, 2, 3, 6]])
    assert torch.equal(processor(swapped, scores.clone()), scores)


def test_reused_processor_with_transformers_generate_on_prompts_of_10_and_12_tokens(tiny_model, tokenizer):
    labels = [tokenizer(w, add_special_tokens=False).input_ids[0] for w in (" banana", " cherry")]
    processor = LabelPriorLogitsProcessor(labels, [0.5, 0.5])
    from transformers import LogitsProcessorList

    for n in (10, 12):
        ids = torch.arange(1000, 1000 + n).unsqueeze(0)
        out = tiny_model.generate(
            ids,
            max_new_tokens=3,
            do_sample=False,
            logits_processor=LogitsProcessorList([processor]),
            pad_token_id=tokenizer.pad_token_id,
        )
        assert out[0, n].item() in labels, f"the first step of the {n}-token prompt was not calibrated"


def test_hf_generate_calibrates_the_first_step_of_every_prefix_group(tiny_backend):
    tok = tiny_backend.tokenizer
    labels = [tok(w, add_special_tokens=False).input_ids[0] for w in (" banana", " cherry")]
    short_head, long_head = "Question about apples and pears:", "Zebra giraffe lion tiger elephant:"
    if tiny_backend._encode_many([short_head])[0] > tiny_backend._encode_many([long_head])[0]:
        short_head, long_head = long_head, short_head
    prompts = [f"{short_head} q{i}" for i in range(3)] + [
        f"{long_head} a much longer question number {i} with many more words in it" for i in range(3)
    ]
    rows = sorted(tiny_backend._encode_many(prompts))
    from biasaudit.backend.rows import ScoredRow

    groups = tiny_backend._group_by_prefix([ScoredRow(tuple(r), {}) for r in rows])
    widths = [max(len(rows[m]) for m in members) for _, members in groups]
    assert len(groups) >= 2 and widths[-1] > widths[0]  # a later group has wider prompts
    processor = LabelPriorLogitsProcessor(labels, [0.5, 0.5])
    out = tiny_backend.generate(prompts, max_new_tokens=2, logits_processors=[processor])
    assert all(text.startswith((" banana", " cherry")) for text in out), out


def test_classifier_records_labels_first_token_mode_truncates(tiny_backend):
    from biasaudit.errors import LabelTruncationWarning

    clf = ICLClassifier(tiny_backend, TEMPLATE, ["banana split", "cherry"]).fit()
    assert clf.truncated_labels_ == [" banana split"]
    with pytest.warns(LabelTruncationWarning):
        clf.predict(REVIEWS[:1])
    assert ICLClassifier(tiny_backend, TEMPLATE, LABELS).fit().truncated_labels_ == []
