"""Negative-bias scenarios, metrics and evaluator: known answers from hand-made rows and a scripted backend."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from biasaudit.errors import InvalidRequestError
from biasaudit.negbias.evaluate import (
    SCENARIOS,
    NegBiasConfig,
    NegBiasEvaluator,
    ScenarioPrediction,
    question_ids,
    question_kinds,
    score_predictions,
)
from biasaudit.negbias.items import YesNoItem
from biasaudit.negbias.metrics import METRICS, yesno_metrics
from biasaudit.negbias.scenarios import Scenario, load_scenarios, parse_final_answer
from biasaudit.probes import ProbeValidationError, probe_from_mapping
from biasaudit.stats import effective_sample_size, wilson_interval

Y, N = True, False


def values(metrics: dict) -> dict:
    return {k: (v["value"] if isinstance(v, dict) else v) for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------- metrics


def test_known_answer_confusion_metrics():
    m = yesno_metrics([Y, Y, N, N], ["yes", "no", "no", "no"])
    v = values(m)
    assert v["n"] == 4 and v["n_answered"] == 4
    assert v["precision"] == 1.0
    assert v["recall"] == 0.5
    assert v["pr_gap"] == 0.5
    assert v["no_rate"] == 0.75
    assert v["gold_no_rate"] == 0.5
    assert v["literal_no_rate"] == 0.75  # no literal answers given: they are the semantic ones
    assert v["fnr_minus_fpr"] == 0.5  # FNR 1/2, FPR 0/2
    assert v["accuracy_answered"] == 0.75
    assert v["idk_rate"] == 0.0 and v["parse_failure_rate"] == 0.0
    # 4 items is below the house minimum for an interval: a value, no interval, and a note that says so
    assert m["precision"]["ci95"] is None and "too few" in m["precision"]["note"]


def test_abstentions_and_failures_are_not_counted_as_no():
    gold = [Y, Y, N, N, Y, N]
    pred = ["yes", "idk", "no", "yes", "fail", "no"]
    v = values(yesno_metrics(gold, pred))
    assert v["n"] == 6 and v["n_answered"] == 4
    assert v["idk_rate"] == pytest.approx(1 / 6) and v["parse_failure_rate"] == pytest.approx(1 / 6)
    assert v["precision"] == 0.5 and v["recall"] == 1.0 and v["pr_gap"] == -0.5
    assert v["no_rate"] == 0.5 and v["gold_no_rate"] == 0.75
    assert v["fnr_minus_fpr"] == pytest.approx(0.0 - 1 / 3)
    assert v["accuracy_answered"] == 0.75


def test_literal_no_rate_reads_the_literal_answers():
    # A negated question: the model said the word "No" to every item, meaning Yes each time.
    gold = [Y, N, Y, N]
    semantic = ["yes", "yes", "yes", "yes"]
    v = values(yesno_metrics(gold, semantic, literal=["no", "no", "no", "no"]))
    assert v["no_rate"] == 0.0 and v["literal_no_rate"] == 1.0


def test_shares_get_wilson_intervals_and_differences_mover():
    rng = np.random.default_rng(0)
    gold = rng.random(40) < 0.5
    pred = np.where(rng.random(40) < 0.7, np.where(gold, "yes", "no"), "no")
    m = yesno_metrics(gold, pred)
    said_no, n_yes, n_no = int(np.sum(pred == "no")), int(gold.sum()), int((~gold).sum())
    assert m["no_rate"]["ci95"] == pytest.approx(wilson_interval(said_no, 40))
    fn, fp = int(np.sum(gold & (pred == "no"))), int(np.sum(~gold & (pred == "yes")))
    assert m["recall"]["ci95"] == pytest.approx(wilson_interval(n_yes - fn, n_yes))
    # One item per question: FNR and FPR share no question, so MOVER is Newcombe's square-and-add.
    (l1, u1), (l2, u2) = wilson_interval(fn, n_yes), wilson_interval(fp, n_no)
    p1, p2 = fn / n_yes, fp / n_no
    expected = (p1 - p2 - np.hypot(p1 - l1, u2 - p2), p1 - p2 + np.hypot(u1 - p1, p2 - l2))
    assert m["fnr_minus_fpr"]["value"] == pytest.approx(p1 - p2)
    assert m["fnr_minus_fpr"]["ci95"] == pytest.approx(expected)
    for name in METRICS:
        low, high = m[name]["ci95"]
        assert low <= m[name]["value"] <= high


def test_saturated_answers_get_intervals_not_points():
    # The default model says No to everything: a bootstrap would report [1, 1] for the No-rate.
    gold, pred = np.tile([True, False], 12), ["no"] * 24
    m = yesno_metrics(gold, pred, clusters=list(np.repeat(np.arange(12), 2)))
    assert m["no_rate"]["value"] == 1.0 and m["no_rate"]["ci95"][0] < 0.9 and m["no_rate"]["ci95"][1] == 1.0
    assert (
        m["recall"]["value"] == 0.0
        and m["recall"]["ci95"][0] == pytest.approx(0.0, abs=1e-12)
        and m["recall"]["ci95"][1] > 0.1
    )
    assert m["fnr_minus_fpr"]["value"] == 1.0 and m["fnr_minus_fpr"]["ci95"][0] < 0.8
    assert m["precision"]["value"] is None and m["pr_gap"]["value"] is None


def test_undefined_metrics_are_none_with_a_note_never_nan():
    m = yesno_metrics([Y, N, N], ["no", "no", "no"], min_ci_items=2)
    assert m["precision"]["value"] is None and "answered Yes" in m["precision"]["note"]
    assert m["pr_gap"]["value"] is None and m["pr_gap"]["ci95"] is None
    assert m["recall"]["value"] == 0.0
    all_idk = yesno_metrics([Y, N], ["idk", "idk"])
    assert all_idk["n_answered"] == 0 and all_idk["idk_rate"]["value"] == 1.0
    for name in ("precision", "recall", "no_rate", "gold_no_rate", "fnr_minus_fpr", "accuracy_answered"):
        assert all_idk[name]["value"] is None and all_idk[name]["note"]
    # One Yes answer in 20 items: precision 1 of 1, with the wide interval one answer deserves.
    rare_yes = yesno_metrics([Y] + [N] * 19, ["yes"] + ["no"] * 19)
    assert rare_yes["precision"]["value"] == 1.0
    assert rare_yes["precision"]["ci95"] == pytest.approx(wilson_interval(1, 1))
    text = json.dumps([m, all_idk, rare_yes])
    assert "NaN" not in text


def paired_answers(n_questions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """QA-style pairs (a gold-Yes and a gold-No item per question) from a model that knows 20% of the
    questions and, of the rest, says No to both items of most and Yes to both of the others."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n_questions, p=[0.2, 0.5, 0.3])  # knows / says No / says Yes
    gold = np.tile([True, False], n_questions)
    knows, says_no = np.repeat(kind == 0, 2), np.repeat(kind == 1, 2)
    pred = np.where(knows, np.where(gold, "yes", "no"), np.where(says_no, "no", "yes"))
    return gold, pred, list(np.repeat(np.arange(n_questions), 2))


def test_question_clusters_keep_values_and_widen_for_paired_answers():
    gold, pred, questions = paired_answers(100)
    by_item = yesno_metrics(gold, pred)
    by_question = yesno_metrics(gold, pred, clusters=questions)
    assert by_item["n_questions"] == 200 and by_question["n_questions"] == 100
    for name in METRICS:  # point estimates and item counts do not depend on the clustering
        assert by_question[name]["value"] == by_item[name]["value"] and by_question[name]["n"] == 200

    def width(metrics: dict) -> float:
        low, high = metrics["no_rate"]["ci95"]
        return high - low

    # The two items of a question the model does not know get one answer: the No-rate moves by questions.
    assert width(by_question) > 1.15 * width(by_item)
    said_no = np.array(pred) == "no"
    n_eff = effective_sample_size(said_no, np.array(questions))
    assert n_eff < 150
    assert by_question["no_rate"]["ci95"] == pytest.approx(wilson_interval(said_no.mean() * n_eff, n_eff))


def test_one_item_questions_give_the_item_intervals_exactly():
    rng = np.random.default_rng(1)
    gold = rng.random(40) < 0.5
    pred = np.where(rng.random(40) < 0.7, np.where(gold, "yes", "no"), "no")
    assert yesno_metrics(gold, pred, clusters=[f"q{i}" for i in range(40)]) == yesno_metrics(gold, pred)


def test_too_few_questions_get_values_without_an_interval():
    gold, pred, questions = paired_answers(6)  # 12 items, 6 questions
    m = yesno_metrics(gold, pred, clusters=questions)
    assert m["n"] == 12 and m["n_questions"] == 6
    assert m["no_rate"]["value"] is not None and m["no_rate"]["ci95"] is None
    assert m["no_rate"]["note"] == "only 6 questions: too few for a 95% interval (need 10)"
    with pytest.raises(InvalidRequestError, match="one question per item"):
        yesno_metrics(gold, pred, clusters=questions[:-1])


def test_too_few_items_and_bad_input():
    one = yesno_metrics([Y], ["yes"])
    assert one["n"] == 1 and all(one[k]["value"] is None and "too few" in one[k]["note"] for k in METRICS)
    empty = yesno_metrics(np.array([], dtype=bool), [])
    assert empty["n"] == 0 and empty["precision"]["note"] == "no items"
    with pytest.raises(InvalidRequestError, match="maybe"):
        yesno_metrics([Y, N], ["yes", "maybe"])
    with pytest.raises(InvalidRequestError, match="one entry per item"):
        yesno_metrics([Y, N], ["yes"])
    with pytest.raises(InvalidRequestError, match="bools"):
        yesno_metrics([1, 0], ["yes", "no"])


# ---------------------------------------------------------------------------------------------- scenarios

ITEM_QA = YesNoItem("qa", "Who wrote {x} Hamlet?", "Shakespeare", Y, "correct", "gold", "t", "1", context="A play.")
ITEM_NATIVE = YesNoItem("nat", "is the sky green?", None, N, "insufficient", "native", "t", "2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: No.", "no"),
        ("answer: yes", "yes"),
        ("It might be yes, since ... yes. Answer: No", "no"),
        ("Answer: Yes\nOn reflection,\nAnswer: no", "no"),
        ("**Final answer:** Yes", "yes"),
        ("So the answer is no.", "no"),
        ('The answer to the question "Is water wet" is yes.', "yes"),
        ("The answer to this. It is no.", "fail"),  # words between answer and "is" stay in one sentence
        ("I think yes, but I am not sure.", "fail"),
        ("Answer: Nope", "fail"),
        ("", "fail"),
    ],
)
def test_cot_parser_last_answer_wins(text, expected):
    assert parse_final_answer(text, {"yes": "yes", "no": "no"}) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Issue 17: the echoed instruction came last and was read as No.
        ('It is right, so the answer is yes. I will end my reply with "Answer: Yes" or "Answer: No".', "yes"),
        ('I will end my reply with "Answer: Yes" or "Answer: No".', "fail"),  # an echo alone is no answer
        ("I will end my reply with \u201cAnswer: Yes\u201d or \u201cAnswer: No\u201d.", "fail"),  # curly quotes
        ("I will end my reply with 'Answer: Yes' or 'Answer: No'.", "fail"),  # single quotes
        ("End with `Answer: No`. Reasoning: it holds. Answer: Yes", "yes"),  # backticks
        ('Step 1: "Answer: No" would be wrong here. Answer: Yes', "yes"),  # one quoted option is a mention too
        # Both options listed, quoted or not, state neither.
        ("Answer: Yes or No", "fail"),
        ("Answer: Yes/No", "fail"),
        ("So the answer is yes or no.", "fail"),
        ("Answer: Yes or Answer: No", "fail"),
        ("Answer: No. The format was Answer: Yes or No.", "no"),  # a listing after the answer is skipped
        ("Yes or no? The answer is no.", "no"),  # a listing without "answer" is not a statement
        # Quoted answer *words* after an unquoted "answer" are answers; trailing text is ignored.
        ('The answer to the question "Is there a sequel?" is "No".', "no"),
        ('The answer to the question "Is the answer yes?" is no', "no"),
        ("Answer: No. I hope this helps!", "no"),
        ("Answer: Yes\n\nThe reasoning above shows why.", "yes"),
    ],
)
def test_cot_parser_skips_echoes_and_listings(text, expected):
    assert parse_final_answer(text, {"yes": "yes", "no": "no"}) == expected


def test_cot_parser_uses_the_scenario_words_and_cuts_at_a_new_item():
    words = {"true": "yes", "false": "no"}
    assert parse_final_answer("answer: FALSE", words) == "no"
    assert parse_final_answer("Answer: yes", words) == "fail"  # not a label of this scenario
    (cot,) = [s for s in load_scenarios().values() if s.chain_of_thought]
    assert cot.parse("Because... Answer: Yes\nQuestion: is water dry?\nAnswer: No") == "yes"
    # The shipped instruction, echoed by the model, is not read as its answer.
    instruction = cot.qa_template.split("correct? ")[1].split("\n")[0]
    assert '"Answer: Yes" or "Answer: No"' in instruction
    assert cot.parse(f"It holds, so the answer is yes. I will {instruction[0].lower()}{instruction[1:]}") == "yes"
    assert cot.parse(instruction) == "fail"


def test_shipped_scenarios_render_and_map_answers():
    scenarios = load_scenarios()
    assert list(scenarios) == list(SCENARIOS)
    plain, negated, ctx = scenarios["plain"], scenarios["negated"], scenarios["context"]
    prompt = plain.render(ITEM_QA)
    assert "Who wrote {x} Hamlet?" in prompt and "Shakespeare" in prompt and prompt.endswith("Answer:")
    assert "{" not in plain.render(ITEM_NATIVE) and "is the sky green?" in plain.render(ITEM_NATIVE)
    assert "A play." in ctx.render(ITEM_QA) and not ctx.applies_to(ITEM_NATIVE)
    with pytest.raises(InvalidRequestError, match="no context"):
        ctx.render(ITEM_NATIVE)
    assert [negated.semantic(a) for a in ("yes", "no", "idk", "fail")] == ["no", "yes", "idk", "fail"]
    assert [plain.semantic(a) for a in ("yes", "no", "idk", "fail")] == ["yes", "no", "idk", "fail"]
    assert scenarios["idk"].labels == [" Yes", " No", " I don't know"] and scenarios["idk"].literal_answer(2) == "idk"
    assert scenarios["true_false"].labels_for(True) == ["True", "False"]
    assert scenarios["swapped"].labels == [" Yes", " No"]  # positive first, whatever the instruction's order


GOOD_SCENARIO = {
    "name": "s",
    "description": "d",
    "qa_template": "Q: {question} A: {candidate}?",
    "native_template": "Q: {question}?",
    "labels": [" Yes", " No"],
    "chat_labels": ["Yes", "No"],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qa_template": "Q: {question}?"}, r"field 'qa_template' has no \{candidate\} placeholder"),
        ({"native_template": "Q?"}, r"field 'native_template' has no \{question\} placeholder"),
        ({"uses_context": True}, r"field 'qa_template' has no \{context\} placeholder"),
        ({"native_template": "{context} {question}"}, r"field 'native_template' has a \{context\}"),
        ({"native_template": "{question} {candidate}"}, r"'native_template' must not use \{candidate\}"),
        ({"offers_idk": True}, r"field 'labels' must hold exactly 3"),
        ({"chat_labels": ["Yes", "yes"]}, r"field 'chat_labels' must hold distinct"),
        ({"labels": [" Yes", 2]}, r"field 'labels'\[1\]: expected str"),
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ],
)
def test_scenario_validation_names_the_field(change, message):
    assert probe_from_mapping(Scenario, GOOD_SCENARIO, "f.yaml").name == "s"
    with pytest.raises(ProbeValidationError, match=message):
        probe_from_mapping(Scenario, {**GOOD_SCENARIO, **change}, "f.yaml")


def test_bad_scenario_file_names_file_scenario_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: t\ndescription: d\nscenarios:\n"
        '  - {name: ok, description: d, qa_template: "{question} {candidate}", native_template: "{question}",'
        ' labels: [" Yes", " No"], chat_labels: ["Yes", "No"]}\n'
        '  - {name: broken, description: d, qa_template: "{question}", native_template: "{question}",'
        ' labels: [" Yes", " No"], chat_labels: ["Yes", "No"]}\n'
    )
    with pytest.raises(ProbeValidationError, match=r"bad\.yaml: scenarios\[1\] \(broken\): field 'qa_template'"):
        load_scenarios(bad)
    bad.write_text("name: t\ndescription: d\nscenarios: []\n")
    with pytest.raises(ProbeValidationError, match="must not be empty"):
        load_scenarios(bad)


# ---------------------------------------------------------------------------------------------- evaluator


def make_items() -> list[YesNoItem]:
    def item(id_, question, candidate, label, subset, context=None):
        kind = "native" if candidate is None else ("gold" if label else "distractor")
        return YesNoItem(id_, question, candidate, label, subset, kind, "test", id_, context=context)

    return [
        item("q1", "Capital of France?", "Paris", Y, "correct", context="Paris is the capital of France."),
        item("q2", "Capital of Spain?", "Lisbon", N, "correct"),
        item("q3", "Author of Dune?", "Asimov", N, "incorrect"),
        item("q4", "Tallest tree species?", "Coast redwood", Y, "insufficient"),
        item("n1", "is water wet", None, Y, "correct", context="Water wets most surfaces."),
        item("n2", "did Zog reign in 1501", None, N, "insufficient"),
    ]


# What the scripted model believes each item's semantic answer is (None: it does not know).
BELIEFS = {"q1": Y, "q2": N, "q3": Y, "q4": None, "n1": Y, "n2": None}


class FakeBackend:
    """Answers from ``BELIEFS``: the believed answer when it knows, No when it does not (negative bias),
    "I don't know" when that is offered. It recognises (scenario, item) from the rendered prompt, so the
    test does not depend on the wording of the shipped scenarios."""

    name = "fake"
    fingerprint = "fake-0"
    n_layers = hidden_size = 1

    def __init__(self, scenarios: dict[str, Scenario], items: list[YesNoItem]):
        self.lookup = {sc.render(it): (sc, it) for sc in scenarios.values() for it in items if sc.applies_to(it)}
        self.calls: list[tuple[str, list[str], dict]] = []

    def _target(self, prompt: str) -> tuple[Scenario, str]:
        scenario, item = self.lookup[prompt]
        belief = BELIEFS[item.id]
        semantic = "idk" if belief is None and scenario.offers_idk else ("yes" if belief else "no")
        literal = {"yes": "no", "no": "yes"}.get(semantic, semantic) if scenario.negated else semantic
        return scenario, literal

    def label_log_probs(
        self, prompts, labels, *, mode="first_token", length_normalize=False, apply_chat_template=False
    ):
        self.calls.append(("label_log_probs", list(prompts), {"labels": list(labels), "mode": mode}))
        rows = []
        for prompt in prompts:
            _, literal = self._target(prompt)
            chosen = ("yes", "no", "idk").index(literal)
            rows.append([math.log(0.6) if i == chosen else math.log(0.1) for i in range(len(labels))])
        return np.array(rows)

    def generate(self, prompts, *, max_new_tokens=64, do_sample=False, seed=None, apply_chat_template=False, **kw):
        self.calls.append(("generate", list(prompts), {"max_new_tokens": max_new_tokens, "do_sample": do_sample}))
        out = []
        for prompt in prompts:
            _, literal = self._target(prompt)
            if self.lookup[prompt][1].id in ("q4", "n2"):
                out.append("Hard to say; it could be yes or no.")  # never commits: a parse failure
            else:
                word, other = ("Yes", "No") if literal == "yes" else ("No", "Yes")
                # After its answer the model starts a new item: that tail must not be read as its answer.
                out.append(f"Thinking... maybe no, maybe yes. Answer: {word}.\nQuestion: next?\nAnswer: {other}")
        return out


def test_evaluator_known_answers_one_call_per_scenario():
    items = make_items()
    backend = FakeBackend(load_scenarios(), items)
    ev = NegBiasEvaluator(cot_max_new_tokens=16, progress=False).fit(backend, items)

    assert len(backend.calls) == len(SCENARIOS)  # exactly one batched request per scenario
    assert [c[0] for c in backend.calls].count("generate") == 1
    call_scenarios = [{backend.lookup[p][0].name for p in c[1]} for c in backend.calls]
    assert all(len(names) == 1 for names in call_scenarios)  # one call never mixes scenarios
    assert sorted(n for (n,) in call_scenarios) == sorted(SCENARIOS)
    assert all(len(set(c[1])) == len(c[1]) for c in backend.calls)  # and asks each item once
    generate_call = next(c for c in backend.calls if c[0] == "generate")
    assert generate_call[2] == {"max_new_tokens": 16, "do_sample": False}

    def answers(scenario, field="answer"):
        return [getattr(p, field) for p in ev.predictions_ if p.scenario == scenario]

    believed = ["yes", "no", "yes", "no", "yes", "no"]
    for name in ("plain", "swapped", "true_false", "negated"):
        assert answers(name) == believed, name
    assert answers("negated", "literal") == ["no", "yes", "no", "yes", "no", "yes"]
    assert answers("negated", "label") == ["No", "Yes", "No", "Yes", "No", "Yes"]
    assert answers("true_false", "label") == ["True", "False", "True", "False", "True", "False"]
    assert answers("idk") == ["yes", "no", "yes", "idk", "yes", "idk"]
    assert answers("context") == ["yes", "yes"] and ev.excluded_["context"] == 4
    assert answers("cot") == ["yes", "no", "yes", "fail", "yes", "fail"]
    raw = answers("cot", "generation")
    assert raw[0] == "Thinking... maybe no, maybe yes. Answer: Yes.\nQuestion: next?\nAnswer: No"  # kept uncut
    assert raw[3] == "Hard to say; it could be yes or no."

    # p(semantic Yes), renormalised over the labels: 0.6 / 0.7 when it says Yes, 0.1 / 0.7 when No.
    assert answers("plain", "p_yes") == pytest.approx([6 / 7, 1 / 7, 6 / 7, 1 / 7, 6 / 7, 1 / 7])
    assert answers("negated", "p_yes") == pytest.approx([6 / 7, 1 / 7, 6 / 7, 1 / 7, 6 / 7, 1 / 7])
    assert answers("idk", "probs")[3] == pytest.approx([0.125, 0.125, 0.75])
    assert answers("plain", "label_mass") == pytest.approx([0.7] * 6)
    assert answers("cot", "p_yes") == [None] * 6

    plain = values(ev.results_["plain"]["all"])
    # gold [Y N N Y Y N] vs said [y n y n y n]: TP 2, FP 1, FN 1, TN 2
    assert plain["precision"] == pytest.approx(2 / 3) and plain["recall"] == pytest.approx(2 / 3)
    assert plain["no_rate"] == 0.5 and plain["accuracy_answered"] == pytest.approx(4 / 6)
    negated = values(ev.results_["negated"]["all"])
    assert negated["no_rate"] == 0.5 and negated["literal_no_rate"] == 0.5
    assert values(ev.results_["idk"]["all"])["idk_rate"] == pytest.approx(2 / 6)
    assert values(ev.results_["cot"]["all"])["parse_failure_rate"] == pytest.approx(2 / 6)
    correct = values(ev.results_["plain"]["correct"])  # q1, q2, n1: all right
    assert correct["n"] == 3 and correct["accuracy_answered"] == 1.0
    lonely = ev.results_["plain"]["incorrect"]  # one item: no metric
    assert lonely["n"] == 1 and lonely["precision"]["value"] is None and "too few" in lonely["precision"]["note"]
    assert set(ev.results_["plain"]) == {"correct", "incorrect", "insufficient", "all"}
    assert ev.results_["context"]["all"]["n"] == 2

    report = ev.to_dict(include_predictions=True)
    json.loads(json.dumps(report))  # JSON-ready
    assert report["config"] == NegBiasConfig(cot_max_new_tokens=16).to_dict()
    assert report["model"] == "fake" and report["fingerprint"] == "fake-0" and report["n_items"] == 6
    assert report["scenarios"]["context"]["n_excluded"] == 4 and report["scenarios"]["context"]["n_asked"] == 2
    assert report["scenarios"]["negated"]["definition"]["negated"] is True
    assert report["results"] == ev.results_ and report["results_by_kind"] == ev.results_by_kind_
    # Every item here is its own question; their kinds are those of their No candidates.
    assert [(p.question_id, p.question_kind) for p in ev.predictions_[:6]] == [
        ("q1", "gold_only"), ("q2", "distractor"), ("q3", "distractor"), ("q4", "gold_only"),
        ("n1", "native"), ("n2", "native"),
    ]  # fmt: skip
    assert set(ev.results_by_kind_["plain"]["all"]) == {"gold_only", "distractor", "native"}
    assert ev.results_by_kind_["plain"]["correct"]["native"]["n"] == 1
    assert len(report["predictions"]) == 6 * 6 + 2
    assert "predictions" not in ev.to_dict()


def test_question_ids_and_kinds_pair_the_items_of_a_question():
    def item(id_, label, kind, source_id, source="nq:1"):
        return YesNoItem(id_, "Q?", None if kind == "native" else "c", label, "insufficient", kind, source, source_id)

    items = [
        item("a:yes", Y, "gold", "a", "nq:1"), item("a:no", N, "model_wrong", "a", "nq:1"),
        item("b:yes", Y, "gold", "b", "nq:2"), item("b:no", N, "distractor", "b", "nq:2"),
        item("a", N, "native", "a", "boolq:7"),  # another source reuses the id "a"
    ]  # fmt: skip
    ids = question_ids(items)
    assert ids == {"a:yes": "a@nq:1", "a:no": "a@nq:1", "b:yes": "b", "b:no": "b", "a": "a@boolq:7"}
    kinds = question_kinds(items)
    assert kinds == {"a:yes": "model_wrong", "a:no": "model_wrong", "b:yes": "distractor", "b:no": "distractor",
                     "a": "native"}  # fmt: skip


def test_score_predictions_by_subset_and_kind_from_saved_rows():
    gold, pred, questions = paired_answers(30)
    rows = [
        ScenarioPrediction(f"{q}:{'yes' if g else 'no'}", str(q), "model_wrong" if q % 3 == 0 else "distractor",
                           "plain", "insufficient" if q < 20 else "correct", bool(g), a, a, a)
        for g, a, q in zip(gold, pred, questions, strict=True)
    ]  # fmt: skip
    again = [ScenarioPrediction(**json.loads(json.dumps(r.to_dict()))) for r in rows]
    by_subset, by_kind = score_predictions(again)
    assert (by_subset, by_kind) == score_predictions(rows)
    assert by_subset["all"]["n_questions"] == 30 and by_subset["correct"]["n_questions"] == 10
    assert by_subset["incorrect"]["n"] == 0
    assert {k: m["n_questions"] for k, m in by_kind["all"].items()} == {"distractor": 20, "model_wrong": 10}
    assert by_kind["incorrect"] == {}
    model_wrong = [r for r in rows if r.question_kind == "model_wrong"]
    expected = yesno_metrics(np.array([r.gold for r in model_wrong]), [r.answer for r in model_wrong],
                             clusters=[r.question_id for r in model_wrong])  # fmt: skip
    assert by_kind["all"]["model_wrong"] == expected


def test_evaluator_chat_labels_and_label_mode_reach_the_backend():
    items = make_items()
    backend = FakeBackend(load_scenarios(), items)
    NegBiasEvaluator(["true_false"], apply_chat_template=True, label_mode="full_sequence", progress=False).fit(
        backend, items
    )
    ((kind, prompts, kwargs),) = backend.calls
    assert kind == "label_log_probs" and len(prompts) == 6
    assert kwargs == {"labels": ["True", "False"], "mode": "full_sequence"}


def test_evaluator_errors():
    items = make_items()
    backend = FakeBackend(load_scenarios(), items)
    with pytest.raises(InvalidRequestError, match=r"unknown scenario\(s\) \['sarcastic'\].*'plain'"):
        NegBiasEvaluator(["plain", "sarcastic"], progress=False).fit(backend, items)
    with pytest.raises(InvalidRequestError, match="no items"):
        NegBiasEvaluator(progress=False).fit(backend, [])
    with pytest.raises(InvalidRequestError, match="twice"):
        NegBiasEvaluator(progress=False).fit(backend, [*items, items[0]])
    with pytest.raises(InvalidRequestError, match="not fitted"):
        NegBiasEvaluator().to_dict()
    assert backend.calls == []  # every refusal comes before the model is asked anything


def test_config_round_trips_through_json():
    ev = NegBiasEvaluator(["plain", "cot"], seed=7, cot_max_new_tokens=32, label_mode="full_sequence")
    config = NegBiasConfig.from_json(ev.config.to_json())
    assert config == ev.config and config.scenarios == ["plain", "cot"]
    assert NegBiasEvaluator.from_config(config).config == config
    with pytest.raises(InvalidRequestError, match="colour"):
        NegBiasConfig.from_dict({"colour": "red"})


# ---------------------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_default_model_plain_negated_cot(default_model_dir):
    from biasaudit.backend.hf import HFBackend

    backend = HFBackend.from_spec("default", progress=False)
    items = make_items()
    ev = NegBiasEvaluator(["plain", "negated", "cot"], cot_max_new_tokens=24, progress=False)
    ev.fit(backend, items)
    assert [(p.scenario, p.item_id) for p in ev.predictions_] == [
        (s, it.id) for s in ("plain", "negated", "cot") for it in items
    ]
    for p in ev.predictions_:
        assert p.answer in ("yes", "no", "idk", "fail") and p.literal in ("yes", "no", "idk", "fail")
        if p.scenario == "cot":
            assert isinstance(p.generation, str) and p.p_yes is None
        else:
            assert p.p_yes is not None and 0.0 < p.p_yes < 1.0
            assert p.answer == ("yes" if p.p_yes > 0.5 else "no")  # argmax agrees with the probability
            assert 0.0 < p.label_mass <= 1.0 and p.literal != "fail"
            assert p.answer == (p.literal if p.scenario == "plain" else {"yes": "no", "no": "yes"}[p.literal])
    report = ev.to_dict(include_predictions=True)
    json.dumps(report)
    assert set(report["scenarios"]) == {"plain", "negated", "cot"}
    assert report["results"]["plain"]["all"]["n"] == 6
