"""Calibrators: exact maths on hand-made numbers, the documented DC recipe, persistence and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biasaudit.calibration import (
    BatchCalibrator,
    ContextualCalibrator,
    DomainContextCalibrator,
    ICLPrompt,
    NoCalibration,
    NotFittedError,
    PriorCalibrator,
    PriorMismatchError,
)
from biasaudit.calibration.domain_context import random_in_domain_strings
from biasaudit.errors import InvalidRequestError

PROMPT = ICLPrompt(
    "Review: {text}\nSentiment:", (" negative", " positive"), prefix="Review: ok\nSentiment: positive\n\n"
)


def query_of(prompt: str) -> str:
    return prompt[len(PROMPT.prefix) + len("Review: ") : -len("\nSentiment:")]


def test_prior_rule_is_diag_inverse_then_renormalise():
    calibrator = NoCalibration().fit(None, PROMPT)  # type: ignore[arg-type]
    calibrator.prior_ = np.array([0.8, 0.2])
    got = calibrator.transform(np.array([[0.6, 0.4], [0.9, 0.1]]))
    np.testing.assert_allclose(got, [[0.75 / 2.75, 2 / 2.75], [1.125 / 1.625, 0.5 / 1.625]])
    assert calibrator.predict(np.array([[0.6, 0.4], [0.9, 0.1]])).tolist() == [1, 0]
    log_probs = np.log([[0.3, 0.2], [0.45, 0.05]])  # raw (unnormalised) probs work the same
    np.testing.assert_allclose(calibrator.transform_log_probs(log_probs), got)


def test_uncalibrated_prior_is_uniform():
    calibrator = NoCalibration().fit(None, PROMPT)  # type: ignore[arg-type]
    np.testing.assert_allclose(calibrator.prior_, [0.5, 0.5])
    np.testing.assert_allclose(calibrator.transform(np.array([[0.2, 0.6]])), [[0.25, 0.75]])


def test_contextual_prior_averages_raw_probabilities_then_normalises_once(scripted):
    # The hand case. Reference (Zhao et al.'s and Fei et al.'s get_p_content_free): mean raw
    # [.37/3, .57/3] -> p_cf = [.3936, .6064]; the test input [.42, .58] / p_cf -> [1.067, .956]: label 0.
    # Averaging renormalised rows instead ([.75,.25], [.5,.5], [.1,.9] -> [.45, .55]) gives
    # [.933, 1.055]: label 1. The two procedures disagree; the reference one is asserted.
    table = {"N/A": [0.30, 0.10], "": [0.02, 0.02], "[MASK]": [0.05, 0.45]}
    backend = scripted(lambda p, labels: np.log(table[query_of(p)]))
    calibrator = ContextualCalibrator().fit(backend, PROMPT)
    np.testing.assert_allclose(calibrator.prior_, [0.37 / 0.94, 0.57 / 0.94])
    assert backend.calls[0]["prompts"][0] == PROMPT.prefix + "Review: N/A\nSentiment:"
    assert calibrator.predict(np.array([[0.42, 0.58]])).tolist() == [0]
    renormalised_mean = np.mean([[0.75, 0.25], [0.5, 0.5], [0.1, 0.9]], axis=0)
    assert int(np.argmax(np.array([0.42, 0.58]) / renormalised_mean)) == 1  # the old procedure's answer
    # One code path with DC: the same log-probs give the same prior.
    dc = DomainContextCalibrator().fit_log_probs(calibrator.content_free_log_probs_, PROMPT)
    np.testing.assert_array_equal(dc.prior_, calibrator.prior_)


def test_dc_strings_follow_the_documented_recipe():
    texts = ["The Movie was GREAT", "bad", "truly awful acting"]  # mean 8/3 words -> floor + 1 = 3
    strings = random_in_domain_strings(texts, n_samples=50, seed=7)
    pool = {"the", "movie", "was", "great", "bad", "truly", "awful", "acting"}
    assert len(strings) == 50
    for s in strings:
        assert s.endswith(" .")
        words = s[: -len(" .")].split(" ")
        assert len(words) == 3 and set(words) <= pool
    assert any(len(set(s.split()[:3])) < 3 for s in strings)  # with replacement: repeats happen
    assert strings == random_in_domain_strings(texts, n_samples=50, seed=7)
    assert strings != random_in_domain_strings(texts, n_samples=50, seed=8)
    tiny = random_in_domain_strings(["a b c d e"], n_samples=3, seed=0)  # 6 words from a pool of 5
    assert all(len(s.split()) == 7 for s in tiny)  # 6 words + "."


def test_dc_prior_averages_raw_probabilities_before_normalising(scripted):
    # Raw label probs that do not sum to one: mean raw = [0.1, 0.3] -> prior [0.25, 0.75].
    # (Averaging renormalised rows instead would give [0.35, 0.65].)
    rows = iter([[0.19, 0.01], [0.01, 0.59]])
    backend = scripted(lambda p, labels: np.log(next(rows)))
    calibrator = DomainContextCalibrator(n_samples=2, seed=0).fit(backend, PROMPT, ["some review text", "more"])
    np.testing.assert_allclose(calibrator.prior_, [0.25, 0.75])
    assert [q["text"] for q in calibrator.random_queries_] == random_in_domain_strings(
        ["some review text", "more"], 2, 0
    )


def test_dc_multi_slot_tasks_sample_each_slot_from_its_own_words():
    prompt = ICLPrompt("{premise}\nquestion: {hypothesis} true or false?\nanswer:", (" true", " false"))
    inputs = [{"premise": "alpha beta gamma delta", "hypothesis": "x"}, {"premise": "epsilon", "hypothesis": "y z"}]
    queries = DomainContextCalibrator(n_samples=5).sample_queries(prompt, inputs)
    for q in queries:
        assert set(q["premise"][:-2].split()) <= {"alpha", "beta", "gamma", "delta", "epsilon"}
        assert set(q["hypothesis"][:-2].split()) <= {"x", "y", "z"}
        assert len(q["premise"].split()) == 3 + 1 and len(q["hypothesis"].split()) == 2 + 1


def test_batch_calibration_follows_the_papers_equations_on_a_hand_case():
    # Zhou et al., ICLR 2024 (arXiv 2309.17249), §4 "Batch Calibration": the contextual prior is the
    # mean over the batch of the label distributions, p̂(y|C) = (1/M) Σ_i p(y|x_i, C) (Eq. 1), and the
    # prediction is argmax_y p(y|x_i, C) − p̂(y|C) (Eq. 2).
    prompt = ICLPrompt("{t}:", ("a", "b", "c"))
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.5, 0.4]])
    raw = probs * np.array([[0.5], [0.1], [0.9]])  # raw label probs need not sum to one: rows are renormalised
    calibrator = BatchCalibrator().fit_log_probs(np.log(raw), prompt)
    np.testing.assert_allclose(calibrator.prior_, [0.3, 1.0 / 3.0, 1.1 / 3.0])
    scores = calibrator.transform_log_probs(np.log(raw))
    np.testing.assert_allclose(scores, probs - [0.3, 1.0 / 3.0, 1.1 / 3.0])
    assert scores.argmax(axis=1).tolist() == [0, 2, 1]
    # Not a geometric mean (a mean of log-probs), which gives another prior here.
    geometric = np.exp(np.log(probs).mean(axis=0))
    assert not np.allclose(geometric / geometric.sum(), calibrator.prior_, atol=1e-3)
    # With more than two labels, subtracting the prior and dividing by it can disagree:
    test = np.array([[0.5, 0.26, 0.24]])
    prior = np.array([0.45, 0.35, 0.2])
    calibrator.prior_ = prior
    assert calibrator.transform(test).argmax() == 0 and (test / prior).argmax() == 2


def test_batch_and_division_rules_agree_for_two_labels():
    rng = np.random.default_rng(3)
    log_probs = np.log(rng.dirichlet([1, 2], size=50))
    prompt = ICLPrompt("{t}:", ("a", "b"))
    bc = BatchCalibrator().fit_log_probs(log_probs, prompt)
    divide = NoCalibration().fit_log_probs(log_probs, prompt)
    divide.prior_ = bc.prior_
    assert (bc.transform_log_probs(log_probs).argmax(1) == divide.transform_log_probs(log_probs).argmax(1)).all()


def test_batch_calibration_streaming_equals_one_batch():
    prompt = ICLPrompt("{t}:", ("a", "b"))
    log_probs = np.log(np.random.default_rng(1).dirichlet([2, 1], size=30))
    whole = BatchCalibrator().fit_log_probs(log_probs, prompt)
    online = BatchCalibrator()
    for row in log_probs:  # one request at a time, as an inference server sees them
        online.partial_fit(row, prompt)
    np.testing.assert_allclose(online.prior_, whole.prior_)
    assert online.n_seen_ == 30
    refit = BatchCalibrator().fit_log_probs(log_probs[:5], prompt).fit_log_probs(log_probs, prompt)
    assert refit.n_seen_ == 30  # fit starts over; only partial_fit accumulates


def test_saved_prior_round_trips_and_is_refused_elsewhere(tmp_path, scripted):
    backend = scripted(lambda p, labels: [math.log(0.6), math.log(0.2)])
    calibrator = DomainContextCalibrator(n_samples=3, seed=4).fit(backend, PROMPT, ["a b c"])
    path = tmp_path / "prior.json"
    calibrator.save(path)
    loaded = PriorCalibrator.load(path, prompt=PROMPT, model="scripted")
    assert isinstance(loaded, DomainContextCalibrator) and loaded.get_params() == {"n_samples": 3, "seed": 4}
    np.testing.assert_allclose(loaded.prior_, [0.75, 0.25])
    with pytest.raises(PriorMismatchError, match="labels"):
        PriorCalibrator.load(path, labels=[" bad", " good"])
    other_prompt = ICLPrompt(PROMPT.query_template, PROMPT.labels, prefix="Review: meh\nSentiment: negative\n\n")
    with pytest.raises(PriorMismatchError, match="another prompt"):
        PriorCalibrator.load(path, prompt=other_prompt)
    with pytest.raises(PriorMismatchError, match="model"):
        PriorCalibrator.load(path, model="gpt2")
    with pytest.raises(ValueError, match="not a 'cc' one"):
        ContextualCalibrator.load(path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(PriorMismatchError, match="cannot read"):
        PriorCalibrator.load(tmp_path / "broken.json")


def test_unfitted_and_bad_inputs_are_refused(scripted):
    with pytest.raises(NotFittedError):
        ContextualCalibrator().transform(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="unlabeled inputs"):
        DomainContextCalibrator().fit(scripted(lambda p, labels: [0, 0]), PROMPT, [])
    with pytest.raises(ValueError, match="batch"):
        BatchCalibrator().fit(scripted(lambda p, labels: [0, 0]), PROMPT, [])
    with pytest.raises(InvalidRequestError, match="no input placeholder"):
        ICLPrompt("Sentiment:", (" a", " b"))
    with pytest.raises(InvalidRequestError, match="duplicates"):
        ICLPrompt("{t}", (" a", " a"))
    with pytest.raises(InvalidRequestError, match="empty"):
        ICLPrompt("{t}", (" a", " "))
    calibrator = NoCalibration().fit(None, PROMPT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 label columns"):
        calibrator.transform(np.array([[0.2, 0.3, 0.5]]))


def test_dc_draws_its_random_words_with_the_demonstration_seed(scripted):
    # fywalter/label-bias: sample_random_texts(texts=test_sentences, n_sample=20, seed=params['seed']).
    from biasaudit.calibration.evaluate import condition_log_probs, make_calibrator

    texts = ["the plot is thin", "a lovely score and fine acting", "too long", "bright and funny"]
    a, b, again = (make_calibrator("dc", seed).calibration_queries(PROMPT, texts) for seed in (0, 1, 0))
    assert a != b and a == again
    assert make_calibrator("dc", 3).get_params() == {"n_samples": 20, "seed": 3}
    backend = scripted(lambda p, labels: [math.log(0.5), math.log(0.5)])
    prompts = {}
    for seed in (0, 1, 0):
        backend.calls.clear()
        condition_log_probs(backend, PROMPT, [{"text": t} for t in texts], ["dc"], seed)
        prompts.setdefault(seed, []).append(backend.calls[-1]["prompts"])  # the DC call comes last
    assert prompts[0][0] != prompts[1][0] and prompts[0][0] == prompts[0][1]
