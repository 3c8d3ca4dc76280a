"""Knowledge probing and set building: known answers with a scripted backend, bad input, real model."""

from __future__ import annotations

import json

import pytest

from biasaudit.errors import DatasetFormatError, InvalidRequestError
from biasaudit.negbias.builder import NegBiasSetBuilder, NegBiasSetConfig
from biasaudit.negbias.items import QAItem, YesNoQuestion, load_items, save_items
from biasaudit.negbias.knowledge import YESNO_MAX_NEW_TOKENS, KnowledgeProber, assign_subset, first_line
from biasaudit.negbias.matching import answers_match, match_verdict, normalize_answer, same_answer, token_f1
from biasaudit.negbias.sources import answer_type, load_qa, load_yesno, shipped_facts


class ScriptedBackend:
    """``generate`` answers from a script keyed by the question in the prompt: a greedy answer and the
    sampled answers (handed out in order). ``fail`` makes the first N calls raise."""

    name, n_layers, hidden_size, fingerprint = "scripted", 1, 1, "scripted"

    def __init__(self, script: dict[str, tuple[str, list[str]]], fail: int = 0):
        self.script, self.fail, self.calls = script, fail, []

    def _question(self, prompt: str) -> str:
        return prompt.rsplit("Q: ", 1)[1].split("\nA:")[0]

    def generate(self, prompts, *, max_new_tokens=64, do_sample=False, temperature=1.0, top_p=1.0, seed=None,
                 logits_processors=None, apply_chat_template=False, stop=None, num_return_sequences=1):  # fmt: skip
        self.calls.append({"n": len(prompts), "do_sample": do_sample, "seed": seed, "stop": stop,
                           "k": num_return_sequences, "max_new_tokens": max_new_tokens})  # fmt: skip
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("device lost")
        prompts = [p for p in prompts for _ in range(num_return_sequences)]
        if not do_sample:
            return [f" {self.script[self._question(p)][0]}\nQ: next" for p in prompts]
        handed: dict[str, int] = {}
        out = []
        for p in prompts:
            q = self._question(p)
            samples = self.script[q][1]
            out.append(" " + samples[handed.get(q, 0) % len(samples)])
            handed[q] = handed.get(q, 0) + 1
        return out


QA = [
    QAItem("paris", "What is the capital of France?", ("Paris",), "t:1", None, "place"),
    QAItem("canberra", "What is the capital of Australia?", ("Canberra",), "t:2", None, "place"),
    QAItem("lima", "What is the capital of Peru?", ("Lima",), "t:3", None, "place"),
    QAItem("legs", "How many legs does a spider have?", ("eight", "8"), "t:4", None, "number"),
]
SCRIPT = {
    "What is the capital of France?": ("Paris", ["Paris", "paris.", "Paris", "It is Paris.", "Lyon"]),
    "What is the capital of Australia?": ("Sydney", ["Sydney", "Sydney", "sydney", "Sydney.", "Canberra"]),
    "What is the capital of Peru?": ("Quito", ["Lima", "Bogota", "Quito", "Santiago", "Caracas"]),
    "How many legs does a spider have?": ("8", ["8", "eight", "Eight.", "six", "8"]),
}


def test_answer_normal_form_and_token_f1():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffel tower"
    assert token_f1("Leonardo da Vinci", "da Vinci") == pytest.approx(0.8)
    assert first_line("  Sydney\nQ: who?") == "Sydney" and first_line("Tin Q: what") == "Tin"


@pytest.mark.parametrize(
    ("prediction", "golds"),
    [
        ("Paris", ["Paris"]),
        ("paris", ["Paris", "City of Light"]),  # case, any alias
        ("The Beatles", ["Beatles"]),  # articles
        ("Washington, D.C.", ["Washington D.C."]),  # punctuation
        ("It is Paris.", ["Paris"]),  # the alias with function words only
        ("in 1945", ["1945"]),
        ("8 May 1945", ["May 8, 1945"]),  # same words, another order (token F1 = 1)
        ("eight", ["8"]),  # number words read as digits
        ("Shakespeare", ["William Shakespeare", "Shakespeare"]),  # a short alias
        ("No Doubt", ["No Doubt"]),  # a negation word that is part of the name
    ],
)
def test_true_positives_match(prediction, golds):
    assert match_verdict(prediction, golds) == "match" and answers_match(prediction, golds)


@pytest.mark.parametrize(
    ("prediction", "golds", "verdict"),
    [
        ("John Quincy Adams", ["John Adams"], "partial"),  # a different person (old rule: token F1 0.8)
        ("not Paris", ["Paris"], "partial"),  # a negation (old rule: containment)
        ("Paris isn't", ["Paris"], "partial"),
        ("never in 1945", ["1945"], "partial"),
        ("Paris, Texas", ["Paris"], "partial"),  # a longer name
        ("Obama", ["Barack Obama"], "partial"),  # a short form: maybe right, maybe not
        ("Paris or Lyon", ["Paris"], "partial"),  # hedging between two answers
        ("Parisian food", ["Paris"], "mismatch"),  # whole words only
        ("Lyon", ["Paris"], "mismatch"),
        ("", ["Paris"], "mismatch"),
        ("it is", ["Paris"], "mismatch"),  # function words alone share nothing
    ],
)
def test_false_positives_do_not_match(prediction, golds, verdict):
    assert match_verdict(prediction, golds) == verdict and not answers_match(prediction, golds)


def test_old_lenient_rule_accepted_what_the_verdict_refuses():
    # The old rule: containment or token F1 >= 0.6. Both false positives of issue 17 passed it.
    def old(prediction, gold):
        pred, ref = normalize_answer(prediction), normalize_answer(gold)
        return pred == ref or f" {ref} " in f" {pred} " or token_f1(pred, ref) >= 0.6

    assert old("John Quincy Adams", "John Adams") and old("not Paris", "Paris")
    assert not answers_match("John Quincy Adams", ["John Adams"]) and not answers_match("not Paris", ["Paris"])


def test_same_answer_is_symmetric_and_strict():
    assert same_answer("Sydney", "sydney.") and same_answer("It is Sydney", "Sydney")
    assert same_answer("Sydney", "It is Sydney")
    assert not same_answer("Sydney", "Sydney Harbour") and not same_answer("Sydney", "Melbourne")


def test_subset_rule_known_answers():
    correct = assign_subset("Paris", ["Paris"] * 4 + ["Lyon"], ["Paris"], min_agree=4)
    assert correct.subset == "correct" and correct.n_agree == 4 and correct.greedy_correct
    shaky = assign_subset("Paris", ["Paris"] * 3 + ["Lyon"] * 2, ["Paris"], min_agree=4)
    assert shaky.subset == "insufficient" and "3/5" in shaky.reason
    wrong = assign_subset("Sydney", ["Sydney"] * 4 + ["Canberra"], ["Canberra"], min_agree=4)
    assert wrong.subset == "incorrect" and wrong.n_agree == 4 and not wrong.greedy_correct
    guess = assign_subset("Quito", ["Lima", "Quito", "Bogota", "Quito", "Quito"], ["Lima"], min_agree=4)
    assert guess.subset == "insufficient" and guess.n_agree == 3
    empty = assign_subset("  ", ["Lima"] * 5, ["Lima"], min_agree=4)
    assert empty.subset == "insufficient" and empty.reason == "empty greedy answer"
    assert (correct.verdict, wrong.verdict, guess.verdict) == ("match", "mismatch", "mismatch")


def test_a_partly_matching_answer_is_neither_knowledge_nor_a_wrong_belief():
    # Consistently "John Quincy Adams" for "John Adams": the old rule (token F1 0.8) called it correct.
    near = assign_subset("John Quincy Adams", ["John Quincy Adams"] * 5, ["John Adams"], min_agree=4)
    assert near.subset == "insufficient" and near.verdict == "partial" and not near.greedy_correct
    assert "partly matches" in near.reason
    negated = assign_subset("not Paris", ["not Paris"] * 5, ["Paris"], min_agree=4)
    assert negated.subset == "insufficient" and negated.verdict == "partial"
    # A partial sample does not make a correct greedy answer's question "correct".
    shaky = assign_subset("Paris", ["Paris"] * 3 + ["Paris, Texas", "not Paris"], ["Paris"], min_agree=4)
    assert shaky.subset == "insufficient" and shaky.n_agree == 3
    # Samples agreeing with a wrong greedy answer must be wrong themselves and the same answer.
    samples = ["Sydney", "sydney", "Sydney Harbour", "Canberra", "It is Sydney"]
    split = assign_subset("Sydney", samples, ["Canberra"], min_agree=4)
    assert split.subset == "insufficient" and split.n_agree == 3
    held = assign_subset("Sydney", [*samples[:3], "Sydney.", samples[4]], ["Canberra"], min_agree=4)
    assert held.subset == "incorrect" and held.n_agree == 4


def test_builder_gives_balanced_items_with_provenance(tmp_path):
    backend = ScriptedBackend(SCRIPT)
    builder = NegBiasSetBuilder(NegBiasSetConfig(seed=3), progress=False).fit(backend, qa=QA)
    subsets = {qid: probe.subset for qid, probe in builder.probes_.items()}
    assert subsets == {"paris": "correct", "canberra": "incorrect", "lima": "insufficient", "legs": "correct"}
    by_id = {item.id: item for item in builder.items_}
    assert len(by_id) == 8
    assert by_id["canberra:yes"].candidate == "Canberra" and by_id["canberra:yes"].label
    assert by_id["canberra:no"].candidate == "Sydney" and by_id["canberra:no"].kind == "model_wrong"
    assert by_id["lima:no"].candidate == "Quito" and by_id["lima:no"].kind == "model_wrong"
    # A correct question gets a distractor of its own type that is not one of its answers.
    assert by_id["paris:no"].kind == "distractor" and by_id["paris:no"].candidate in {"Canberra", "Lima"}
    for subset, counts in builder.summary_["subsets"].items():
        assert counts["n_yes"] == counts["n_no"], subset
    assert by_id["lima:no"].probe["samples"] == SCRIPT["What is the capital of Peru?"][1]
    assert by_id["lima:no"].seed == 3 and by_id["lima:no"].source == "t:3"
    # One greedy and one sampling call for the chunk, k samples per question (asked for, not repeated
    # prompts, so the backend can encode each prompt once), seeded; both stop at the end of the line.
    assert [(c["n"], c["k"]) for c in backend.calls] == [(4, 1), (4, 5)] and backend.calls[1]["seed"] == 3
    assert [c["stop"] for c in backend.calls] == [["\n"], ["\n"]]
    path = save_items(builder.items_, tmp_path / "set.jsonl")
    assert [i.to_dict() for i in load_items(path)] == [i.to_dict() for i in builder.items_]


def test_a_partly_right_own_answer_is_never_proposed_as_a_no_item():
    qa = [
        QAItem("adams", "Who was the second US president?", ("John Adams",), "t:1", None, "person"),
        QAItem("jqa", "Who was the sixth US president?", ("John Quincy Adams",), "t:2", None, "person"),
        QAItem("gw", "Who was the first US president?", ("George Washington",), "t:3", None, "person"),
        QAItem("tj", "Who was the third US president?", ("Thomas Jefferson",), "t:4", None, "person"),
    ]
    script = {
        "Who was the second US president?": ("John Quincy Adams", ["John Quincy Adams"] * 5),
        "Who was the sixth US president?": ("James Monroe", ["James Monroe"] * 5),
        "Who was the first US president?": ("George Washington", ["George Washington"] * 5),
        "Who was the third US president?": ("Jefferson", ["Jefferson"] * 5),
    }
    for seed in range(5):
        builder = NegBiasSetBuilder(NegBiasSetConfig(seed=seed), progress=False).fit(ScriptedBackend(script), qa=qa)
        by_id = {item.id: item for item in builder.items_}
        subsets = {qid: (probe.subset, probe.verdict) for qid, probe in builder.probes_.items()}
        assert subsets == {"adams": ("insufficient", "partial"), "jqa": ("incorrect", "mismatch"),
                           "gw": ("correct", "match"), "tj": ("insufficient", "partial")}  # fmt: skip
        # Partial own answers ("John Quincy Adams" for John Adams, "Jefferson" for Thomas Jefferson)
        # give way to a distractor, and a distractor never shares a name with the gold answer.
        assert by_id["adams:no"].kind == "distractor" and by_id["tj:no"].kind == "distractor"
        assert by_id["adams:no"].candidate in {"George Washington", "Thomas Jefferson"}
        assert by_id["jqa:no"].kind == "model_wrong" and by_id["jqa:no"].candidate == "James Monroe"
        assert by_id["jqa:yes"].candidate == "John Quincy Adams"


def test_distractor_only_mode_and_type_fallback():
    builder = NegBiasSetBuilder(NegBiasSetConfig(negatives="distractor"), progress=False)
    builder.fit(ScriptedBackend(SCRIPT), qa=QA)
    kinds = {item.kind for item in builder.items_ if not item.label}
    assert kinds == {"distractor"}
    # "legs" is the only number question: its distractor comes from another type.
    legs_no = next(i for i in builder.items_ if i.id == "legs:no")
    assert legs_no.candidate in {"Paris", "Canberra", "Lima"}
    with pytest.raises(InvalidRequestError, match="negatives"):
        NegBiasSetBuilder(NegBiasSetConfig(negatives="own")).fit(ScriptedBackend(SCRIPT), qa=QA)


def test_generation_failures_are_retried_once_then_counted_insufficient():
    once = NegBiasSetBuilder(progress=False).fit(ScriptedBackend(SCRIPT, fail=1), qa=QA)
    assert once.probes_["paris"].subset == "correct"
    twice = NegBiasSetBuilder(progress=False).fit(ScriptedBackend(SCRIPT, fail=2), qa=QA)
    assert {p.subset for p in twice.probes_.values()} == {"insufficient"}
    assert all("generation failed twice: RuntimeError: device lost" in p.reason for p in twice.probes_.values())
    assert len(twice.items_) == 2 * len(QA)  # counted, not dropped


def test_native_yesno_questions_are_balanced_per_subset():
    questions = [YesNoQuestion(f"q{i}", f"Is thing {i} true?", answer, f"b:{i}") for i, answer in
                 enumerate([True, True, True, False, True, False])]  # fmt: skip
    script = {q.question: ("yes", ["yes"] * 5) for q in questions}
    backend = ScriptedBackend(script)
    builder = NegBiasSetBuilder(NegBiasSetConfig(seed=1), progress=False).fit(backend, yesno=questions)
    # Greedy and sampled answers get the same short yes/no token limit.
    assert [c["max_new_tokens"] for c in backend.calls] == [YESNO_MAX_NEW_TOKENS] * 2
    # Always "yes": gold-yes questions are known, gold-no ones consistently wrong.
    assert {q: p.subset for q, p in builder.probes_.items()} == {
        "q0": "correct", "q1": "correct", "q2": "correct", "q3": "incorrect", "q4": "correct", "q5": "incorrect"
    }  # fmt: skip
    summary = builder.summary_["subsets"]
    assert summary["correct"]["n_items"] == 0 and summary["correct"]["dropped_to_balance"] == 4
    assert summary["incorrect"]["dropped_to_balance"] == 2
    unbalanced = NegBiasSetBuilder(NegBiasSetConfig(balance=False), progress=False)
    assert len(unbalanced.fit(ScriptedBackend(script), yesno=questions).items_) == 6


def test_loaders_read_distributed_formats(tmp_path):
    nq = tmp_path / "nq.jsonl"
    nq.write_text('{"question": "who wrote hamlet", "answer": ["Shakespeare", "William Shakespeare"]}\n')
    (item,) = load_qa(nq)
    assert item.answers == ("Shakespeare", "William Shakespeare") and item.source == f"{nq}:1"
    assert answer_type(item) == "person"
    boolq = tmp_path / "boolq.jsonl"
    boolq.write_text('{"question": "is the sky blue", "answer": true, "passage": "It is.", "title": "Sky"}\n')
    (question,) = load_yesno(boolq)
    assert question.question == "Is the sky blue?" and question.answer and question.context == "It is."
    strategy = tmp_path / "strategy.json"
    strategy.write_text(json.dumps([{"qid": "a", "question": "Q1?", "answer": False, "facts": ["x.", "y."]},
                                    {"qid": "b", "question": "Q2?", "answer": "Yes"}], indent=2))  # fmt: skip
    rows = load_yesno(strategy)
    assert [r.answer for r in rows] == [False, True] and rows[0].context == "x. y."
    assert rows[1].source == f"{strategy}:11"  # the line its object starts on


@pytest.mark.parametrize(
    ("loader", "suffix", "content", "message"),
    [
        (load_qa, ".jsonl", '{"question": "q?", "answer": ["a"]}\n{"question": "r?", "answer": []}\n',
         r"nq\.jsonl:2: field 'answer' has no gold answer"),
        (load_qa, ".jsonl", '{"question": "q?"}\n', r":1: field 'answer' is missing"),
        (load_qa, ".jsonl", '{"id": "x", "question": "q", "answer": "a"}\n{"id": "x", "question": "r", "answer": 1}\n',
         r":2: duplicate id 'x' \(first at .*:1\)"),
        (load_yesno, ".jsonl", '{"question": "q", "answer": "maybe"}\n',
         r"nq\.jsonl:1: field 'answer' is 'maybe', expected yes/no/true/false"),
        (load_yesno, ".jsonl", '{"question": "q", "answer": true}\n\n{"question": "r", "answer": true}\n',
         r":2: empty line"),
    ],
)  # fmt: skip
def test_bad_rows_are_reported_with_file_and_line(tmp_path, loader, suffix, content, message):
    path = tmp_path / f"nq{suffix}"
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match=message):
        loader(path)


def test_limit_spreads_over_the_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(f'{{"question": "q{i}?", "answer": ["a{i}"]}}\n' for i in range(10)))
    assert [q.question for q in load_qa(path, limit=3)] == ["q0?", "q3?", "q6?"]
    assert len(load_qa(path, limit=50)) == 10


def test_prober_rejects_impossible_agreement():
    with pytest.raises(ValueError, match="min_agree"):
        KnowledgeProber(k=3, min_agree=4)


def test_shipped_fact_set_loads_with_types():
    items = load_qa(shipped_facts())
    assert len(items) >= 150
    assert {item.answer_type for item in items} == {"person", "place", "date", "number", "other"}


@pytest.mark.slow
def test_default_model_yields_all_three_subsets_on_the_shipped_facts(default_model_dir):
    from biasaudit.backend.hf import HFBackend

    backend = HFBackend.from_spec("default")
    # 48 questions spread over the five answer types: about 30 s on 2 CPU cores.
    builder = NegBiasSetBuilder(progress=False).fit(backend, qa=load_qa(shipped_facts(), limit=48))
    summary = builder.summary_["subsets"]
    for subset in ("correct", "incorrect", "insufficient"):
        assert summary[subset]["n_items"] >= 4, (subset, summary)
        assert summary[subset]["n_yes"] == summary[subset]["n_no"]
    assert summary["incorrect"]["kinds"].get("model_wrong", 0) > 0


def test_samples_hold_every_probe_item_and_prediction():
    from types import SimpleNamespace

    from biasaudit.negbias.audit import negbias_samples
    from biasaudit.negbias.evaluate import ScenarioPrediction

    builder = NegBiasSetBuilder(NegBiasSetConfig(seed=3), progress=False).fit(ScriptedBackend(SCRIPT), qa=QA)
    reply = 'I will end my reply with "Answer: Yes" or "Answer: No".'
    predictions = [
        ScenarioPrediction("lima:no", "lima", "model_wrong", "plain", "insufficient", False, "no", "no", "No",
                           p_yes=1 / 3, probs=[1 / 3, 2 / 3], label_mass=0.123456),
        ScenarioPrediction("lima:no", "lima", "model_wrong", "cot", "insufficient", False, "fail", "fail", None,
                           generation=reply),
    ]  # fmt: skip
    samples = negbias_samples(builder, SimpleNamespace(predictions_=predictions))
    questions = {row["question_id"]: row for row in samples["questions"]}
    assert set(questions) == {"paris", "canberra", "lima", "legs"}
    lima = questions["lima"]
    assert lima["question"] == "What is the capital of Peru?" and lima["gold_answers"] == ["Lima"]
    assert lima["probe"]["greedy"] == "Quito" and lima["probe"]["samples"] == SCRIPT[lima["question"]][1]
    assert lima["probe"]["subset"] == "insufficient" and lima["probe"]["verdict"] == "mismatch"
    assert lima["items"] == {"lima:yes": {"candidate": "Lima", "label": True, "kind": "gold"},
                             "lima:no": {"candidate": "Quito", "label": False, "kind": "model_wrong"}}  # fmt: skip
    plain, cot = samples["predictions"]
    assert plain["p_yes"] == 0.3333 and plain["probs"] == [0.3333, 0.6667] and plain["label_mass"] == 0.1235
    assert cot["generation"] == reply  # chain-of-thought replies are kept whole, for audit
    assert ScenarioPrediction(**json.loads(json.dumps(cot))) == predictions[1]
