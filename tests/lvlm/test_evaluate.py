"""LVLMEvaluator, the report section, the documented examples and the ``biasaudit lvlm`` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biasaudit.backend.vlm import VLMBackend
from biasaudit.cli import app
from biasaudit.errors import InvalidRequestError
from biasaudit.lvlm import DebiasSamplingProcessor, LVLMEvaluator, PostHocDebias, make_probe
from biasaudit.lvlm.evaluate import accuracy_change, answer_metrics, parse_answer, stratified_share_interval
from biasaudit.lvlm.report import render_html, render_markdown
from biasaudit.stats import paired_difference_interval, wilson_interval

DOC = Path(__file__).resolve().parents[2] / "docs" / "lvlm.md"


@pytest.fixture(scope="module")
def llava(tiny_vlm_dirs) -> VLMBackend:
    return VLMBackend.from_spec(str(tiny_vlm_dirs["llava"]), progress=False)


def test_parse_answer_known_answers():
    assert parse_answer("Yes.", ["Yes", "No"]) == 0
    assert parse_answer(" no, there is none", ["Yes", "No"]) == 1
    assert parse_answer("None of them", ["Yes", "No"]) is None  # "No" is not read from "None"
    assert parse_answer("(B) 3", ["A", "B", "C", "D"]) == 1
    assert parse_answer("A", ["A", "B", "C", "D"]) == 0
    assert parse_answer("Apples", ["A", "B"]) is None
    assert parse_answer("red apple", ["red", "red apple"]) == 1  # the longer label wins
    assert parse_answer("", ["Yes", "No"]) is None
    assert parse_answer("The answer is no.", ["Yes", "No"]) == 1  # one label named in the reply
    assert parse_answer("Yes or no? Hard to say", ["Yes", "No"]) == 0  # the start decides first
    assert parse_answer("I cannot say yes or no", ["Yes", "No"]) is None  # both named: no answer
    assert parse_answer("Nothing known", ["Yes", "No"]) is None  # not a whole word
    assert parse_answer("There is a square", ["A", "B", "C", "D"]) is None  # "a" is an article here


def test_answer_metrics_known_answers():
    # gold: Y Y N N; predicted: Y N N fail
    m = answer_metrics([0, 1, 1, None], [0, 0, 1, 1], ["Yes", "No"])
    assert m["accuracy"] == 0.5
    assert m["f1"] == pytest.approx(2 * 1 * 0.5 / (1 + 0.5))  # Yes: precision 1/1, recall 1/2
    assert m["yes_ratio"] == 0.25 and m["gold_yes_ratio"] == 0.5
    assert m["parse_failure_rate"] == 0.25
    assert m["answer_distribution"] == {"Yes": 0.25, "No": 0.5}
    # Strata gold Yes / gold No, 2 items each: right 1 of 2 in both; said Yes 1 of 2 and 0 of 2. MOVER over
    # their Wilson limits: Wilson(1, 2) = [0.0945, 0.9055], Wilson(0, 2) = [0, 0.6576].
    low1, high1 = wilson_interval(1, 2)
    half = np.sqrt(2) * 0.5 * (0.5 - low1)
    np.testing.assert_allclose(m["accuracy_ci"], [0.5 - half, 0.5 + half])
    high0 = wilson_interval(0, 2)[1]
    up = np.hypot(0.5 * (high1 - 0.5), 0.5 * high0)
    np.testing.assert_allclose(m["yes_ratio_ci"], [0.25 - 0.5 * (0.5 - low1), 0.25 + up])
    choice = answer_metrics([0, 1, 2, 2], [0, 1, 2, 3], ["A", "B", "C", "D"])
    assert choice["accuracy"] == 0.75 and "yes_ratio" not in choice
    assert choice["f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    assert choice["accuracy_ci"] == list(wilson_interval(3, 4))  # multiple choice: one Wilson interval


def test_stratified_share_interval():
    assert stratified_share_interval([7], [20]) == wilson_interval(7, 20)
    assert stratified_share_interval([7, 0], [20, 0]) == wilson_interval(7, 20)  # an empty stratum is skipped
    low, high = stratified_share_interval([10, 10], [10, 10])  # all right: [1 - .., 1]
    assert high == 1.0 and low == pytest.approx(1 - np.sqrt(2) * 0.5 * (1 - wilson_interval(10, 10)[0]))
    with pytest.raises(ValueError, match="successes"):
        stratified_share_interval([3], [2])


def test_evaluator_matches_its_parts(llava):
    items = make_probe("pope", 12, seed=1, image_size=64)
    ev = LVLMEvaluator(mitigations=["none", "posthoc", "sampling", "vcd"], references=["none", "blank"])
    ev.fit(llava, items)
    assert list(ev.results_) == ["blind", "none", "posthoc", "greedy", "sampling", "vcd"]
    assert set(ev.results_["none"]) == {"all", "random", "popular", "adversarial"}
    assert ev.results_["none"]["all"]["n"] == 12 and ev.results_["none"]["random"]["n"] == 4
    # posthoc is exactly PostHocDebias over the backend's label log-probs, references summed.
    questions, images = [it.question for it in items], [it.image for it in items]
    lp = llava.label_log_probs_by_input(questions, ["Yes", "No"], images, ("image", "none", "blank"))
    refs = {"none": lp["none"], "blank": lp["blank"]}
    picks = PostHocDebias(references=("none", "blank")).fit(refs, log_probs=True).predict(lp["image"], log_probs=True)
    gold = np.array([it.labels.index(it.answer) for it in items])
    assert ev.results_["posthoc"]["all"]["accuracy"] == pytest.approx(float(np.mean(picks == gold)))
    assert [p["posthoc"] for p in ev.predictions_] == [["Yes", "No"][k] for k in picks]
    # sampling is the backend's debiased generation, parsed.
    texts = llava.generate(questions, images=images, max_new_tokens=8, debias=DebiasSamplingProcessor())
    assert [p["sampling_text"] for p in ev.predictions_] == texts


def test_accuracy_change_known_answer_and_pairing():
    # 10 items: both right on 5, only the method on 3, only the peer on 1, neither on 1.
    ours = np.array([1] * 5 + [1] * 3 + [0] + [0], bool)
    peer = np.array([1] * 5 + [0] * 3 + [1] + [0], bool)
    change = accuracy_change(ours, peer)
    assert (change["delta"], change["gains"], change["losses"], change["n"]) == (0.2, 3, 1, 10)
    assert change["ci"] == list(paired_difference_interval(5, 3, 1, 1))
    # The interval depends on which item is which: the same two accuracies, paired differently, differ.
    shuffled = accuracy_change(ours, peer[np.r_[9, 1:9, 0]])
    assert shuffled["delta"] == change["delta"] and shuffled["ci"] != change["ci"]
    with pytest.raises(ValueError, match="equally long"):
        accuracy_change(ours, peer[:5])


def test_evaluator_pairs_each_mitigation_with_its_peer(llava):
    items = make_probe("pope", 12, seed=1, image_size=64)
    ev = LVLMEvaluator(mitigations=["none", "posthoc", "sampling"]).fit(llava, items)
    gold = [it.answer for it in items]
    for method, peer in (("posthoc", "none"), ("sampling", "greedy")):
        for split in ("all", "random"):
            rows = [i for i, it in enumerate(items) if split == "all" or it.split == split]
            ours = np.array([ev.predictions_[i][method] == gold[i] for i in rows])
            theirs = np.array([ev.predictions_[i][peer] == gold[i] for i in rows])
            change = ev.results_[method][split]["accuracy_change"]
            assert change == {"vs": peer, **accuracy_change(ours, theirs)}
    assert all("accuracy_change" not in ev.results_[m]["all"] for m in ("blind", "none", "greedy"))


def test_evaluator_reports_only_what_was_asked(llava):
    items = make_probe("pope", 4, seed=3, image_size=64)
    ev = LVLMEvaluator(mitigations=["posthoc"]).fit(llava, items)
    assert list(ev.results_) == ["blind", "posthoc"]
    assert set(ev.predictions_[0]) == {"id", "split", "answer", "blind", "posthoc"}


def test_evaluator_mixed_label_sets(llava):
    items = make_probe("pope-random", 4, seed=2, image_size=64) + make_probe("count", 4, seed=2, image_size=64)
    ev = LVLMEvaluator(mitigations=["none", "posthoc"], posthoc_mode="dataset").fit(llava, items)
    mixed = ev.results_["none"]["all"]
    assert set(mixed) == {"n", "accuracy", "accuracy_ci"} and mixed["n"] == 8
    assert "accuracy_change" in ev.results_["posthoc"]["all"]  # paired over both label sets
    assert ev.results_["none"]["count"]["n"] == 4 and "f1" in ev.results_["none"]["count"]
    assert set(ev.posthoc_) == {"Yes/No", "A/B/C/D"}
    assert len(ev.to_dict()["posthoc"]["A/B/C/D"]["prior"]) == 4


def test_evaluator_bad_input(llava):
    with pytest.raises(InvalidRequestError, match="unknown mitigation"):
        LVLMEvaluator(mitigations=["none", "magic"])
    with pytest.raises(InvalidRequestError, match="unknown reference"):
        LVLMEvaluator(references=["dark"])
    with pytest.raises(InvalidRequestError, match="unknown lvlm config field"):
        LVLMEvaluator(alfa=1.0)
    items = make_probe("pope", 2, seed=0, image_size=64)
    with pytest.raises(InvalidRequestError, match="ids repeat"):
        LVLMEvaluator().fit(llava, [items[0], items[0]])
    # ProbeItem checks itself; items from elsewhere (any object with the same fields) are checked on fit.
    from types import SimpleNamespace

    fields = {"id": "x", "image": items[0].image, "question": "Is there a cat?", "split": "s"}
    with pytest.raises(InvalidRequestError, match="no answer-label set"):
        LVLMEvaluator().fit(llava, [SimpleNamespace(**fields, labels=(), answer="Yes")])
    with pytest.raises(InvalidRequestError, match="is not one of"):
        LVLMEvaluator().fit(llava, [SimpleNamespace(**fields, labels=("Yes", "No"), answer="Maybe")])


def test_report_escapes_model_text():
    result = {
        "model": "m<1>",
        "probe": "pope",
        "n_items": 1,
        "seed": 0,
        "config": {"references": ["none"], "posthoc_mode": "per_question"},
        "results": {"greedy": {"all": {"n": 1, "accuracy": 0.0, "f1": 0.0, "parse_failure_rate": 1.0}}},
        "predictions": [{"id": "x", "answer": "Yes", "greedy": None, "greedy_text": "<script>alert(1)</script>|"}],
    }
    page = render_html(result)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "m&lt;1&gt;" in page
    md = render_markdown(result)
    assert "<script>" not in md and "\\|" in md


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_documented_generate_wrapper_runs_and_matches_the_backend(tiny_vlm_dirs):
    item = make_probe("pope", 1, seed=5, image_size=64)[0]
    model_dir = str(tiny_vlm_dirs["llava"])
    namespace = {"model_dir": model_dir, "image": item.image, "question": item.question}
    example = _python_blocks()[0]
    assert len(example.strip().splitlines()) <= 10
    exec(compile(example, str(DOC), "exec"), namespace)
    backend = VLMBackend.from_spec(model_dir, progress=False)
    expected = backend.generate(
        [item.question], images=[item.image], max_new_tokens=8, debias=DebiasSamplingProcessor()
    )
    assert namespace["answer"] == expected[0]
    plain = backend.generate([item.question], images=[item.image], max_new_tokens=8)
    assert plain[0] != expected[0]  # the processor changed the decoding


def test_documented_posthoc_example_runs(tiny_vlm_dirs):
    items = make_probe("pope", 6, seed=6, image_size=64)
    namespace = {
        "model_dir": str(tiny_vlm_dirs["idefics3"]),
        "questions": [it.question for it in items],
        "images": [it.image for it in items],
    }
    exec(compile(_python_blocks()[1], str(DOC), "exec"), namespace)
    assert namespace["answers"].shape == (6,) and set(namespace["answers"]) <= {0, 1}


def test_lvlm_cli_end_to_end_and_saved_probe(tiny_vlm_dirs, tmp_path):
    model = str(tiny_vlm_dirs["idefics3"])
    out = tmp_path / "run"
    args = ["lvlm", model, "--n", "9", "--mitigations", "none,posthoc,sampling", "--image-size", "64"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--save-probe"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "lvlm.json").read_text())
    assert doc["n_items"] == 9 and doc["fingerprint"]
    assert set(doc["results"]) == {"blind", "none", "posthoc", "greedy", "sampling"}
    assert len(doc["predictions"]) == 9
    assert (out / "lvlm.md").read_text().startswith("## Language prior")
    assert "<table>" in (out / "lvlm.html").read_text()
    assert len(list((out / "probe").glob("*.png"))) == 9
    again = tmp_path / "again"
    result = CliRunner().invoke(
        app, ["lvlm", model, "--probe", str(out / "probe"), "--mitigations", "none", "--out", str(again)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((again / "lvlm.json").read_text())["results"]["none"] == doc["results"]["none"]


def test_lvlm_cli_errors(tiny_vlm_dirs, default_model_dir, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(
        app, ["lvlm", str(tiny_vlm_dirs["llava"]), "--mitigations", "none,magic", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "unknown mitigation" in bad.output
    text_only = runner.invoke(app, ["lvlm", default_model_dir, "--n", "2", "--out", str(tmp_path)])
    assert text_only.exit_code == 2 and "not a vision-language model" in text_only.output
    probe = runner.invoke(app, ["lvlm", str(tiny_vlm_dirs["llava"]), "--probe", "mme", "--out", str(tmp_path)])
    assert probe.exit_code == 2 and "unknown probe" in probe.output
