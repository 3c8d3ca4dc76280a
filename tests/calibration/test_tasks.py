"""ICL task files and loaders: known answers on tiny hand-written files, then the real shared datasets."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from biasaudit.calibration.examples import load_split, read_examples, sample_demonstrations, sample_test
from biasaudit.calibration.tasks import Example, ICLTask, load_task
from biasaudit.datasets import default_data_dir
from biasaudit.errors import DatasetFormatError, DatasetNotFoundError, InvalidRequestError
from biasaudit.probes import ProbeValidationError, probe_from_mapping

TASK_NAMES = ["sst2", "agnews", "trec", "cb", "rte"]
AGNEWS_LABELS = {"1": "world", "2": "sports", "3": "business", "4": "technology"}
TREC_LABELS = {
    "ABBR": "abbreviation",
    "ENTY": "entity",
    "DESC": "description",
    "HUM": "person",
    "LOC": "location",
    "NUM": "number",
}
CB_TEMPLATE = "{premise}\nquestion: {hypothesis}. true, false, or neither?\nanswer: {label}"
CB_LABELS = {"entailment": "true", "contradiction": "false", "neutral": "neither"}
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def make_task(**overrides) -> ICLTask:
    data = {
        "name": "t",
        "description": "d",
        "format": "sst2_lines",
        "train": "train.txt",
        "test": "test.txt",
        "template": "Review: {text}\nSentiment: {label}",
        "labels": {"0": "negative", "1": "positive"},
        **overrides,
    }
    return probe_from_mapping(ICLTask, data, "test")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- parsing: exact Examples per format -----------------------------------------------------------


def test_sst2_lines(tmp_path):
    path = write(tmp_path / "train.txt", "1 a gem of a film .\n0 dull , dull , dull \n\n")
    assert read_examples(make_task(), path) == [
        Example({"text": "a gem of a film ."}, 1),
        Example({"text": "dull , dull , dull"}, 0),
    ]


def test_agnews_csv(tmp_path):
    path = write(
        tmp_path / "a.csv",
        "Class Index,Title,Description\n"
        '3,Oil up,"Prices rose.\\Traders #39;ll wait, it #39;s said."\n'
        '1,"Vote, at last",Polls open quot;today quot;\n',
    )
    task = make_task(format="agnews_csv", template="Article: {text}\nAnswer: {label}", labels=AGNEWS_LABELS)
    assert read_examples(task, path) == [
        Example(
            {
                "text": "Oil up. Prices rose. Traders'll wait, it's said.",
                "title": "Oil up",
                "description": "Prices rose. Traders'll wait, it's said.",
            },
            2,
        ),
        Example(
            {"text": 'Vote, at last. Polls open"today"', "title": "Vote, at last", "description": 'Polls open"today"'},
            0,
        ),
    ]


def test_trec_lines(tmp_path):
    path = write(
        tmp_path / "q.txt", "HUM:ind Who wrote `` Hamlet '' ?\nNUM:date When did Rome 's empire fall , roughly ?"
    )
    task = make_task(format="trec_lines", template="Question: {text}\nAnswer type: {label}", labels=TREC_LABELS)
    assert read_examples(task, path) == [
        Example({"text": 'Who wrote "Hamlet"?'}, 3),
        Example({"text": "When did Rome's empire fall, roughly?"}, 5),
    ]


def test_superglue_jsonl(tmp_path):
    rows = [
        {"premise": " It rained. ", "hypothesis": "The ground is wet", "label": "neutral", "idx": 0},
        {"premise": "It rained.", "hypothesis": "It was dry", "label": "contradiction", "idx": 1},
    ]
    path = write(tmp_path / "v.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    task = make_task(format="superglue_jsonl", template=CB_TEMPLATE, labels=CB_LABELS)
    assert read_examples(task, path) == [
        Example({"premise": "It rained.", "hypothesis": "The ground is wet"}, 2),
        Example({"premise": "It rained.", "hypothesis": "It was dry"}, 1),
    ]


# --- malformed rows name file:line --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "text", "line", "message"),
    [
        ("sst2_lines", "1 fine\n2 unknown label\n", 2, "gold label '2'"),
        ("sst2_lines", "1 fine\n\n0 after a hole\n", 2, "empty line"),
        ("sst2_lines", "1 fine\n0\n", 2, "expected '<label> <sentence>'"),
        ("trec_lines", "HUM:ind Who ?\nHUM Who ?\n", 2, "COARSE:fine"),
        ("trec_lines", "XYZ:abc What ?\n", 1, "gold label 'XYZ'"),
        ("superglue_jsonl", '{"premise": "p", "hypothesis": "h", "label": "neutral"}\n{"premise": "p"\n', 2, "JSON"),
        ("superglue_jsonl", '{"premise": "p", "label": "neutral"}\n', 1, "'hypothesis'"),
        ("superglue_jsonl", '["p", "h"]\n', 1, "JSON object"),
        ("agnews_csv", "Class,Title\n1,a,b\n", 1, "header"),
        ("agnews_csv", "Class Index,Title,Description\n1,a,b\n2,only two\n", 3, "3 columns"),
        ("agnews_csv", 'Class Index,Title,Description\n1,"multi\nline",b\n\n5,a,b\n', 4, "empty line"),
        ("agnews_csv", 'Class Index,Title,Description\n1,"multi\nline",b\n5,a,b\n', 4, "gold label '5'"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, fmt, text, line, message):
    labels = {
        "sst2_lines": {"0": "negative", "1": "positive"},
        "trec_lines": TREC_LABELS,
        "superglue_jsonl": CB_LABELS,
        "agnews_csv": AGNEWS_LABELS,
    }[fmt]
    template = CB_TEMPLATE if fmt == "superglue_jsonl" else "X: {text}\nY: {label}"
    path = write(tmp_path / "data.txt", text)
    with pytest.raises(DatasetFormatError) as info:
        read_examples(make_task(format=fmt, template=template, labels=labels), path)
    assert f"{path}:{line}:" in str(info.value)
    assert message in str(info.value)


def test_missing_file_and_data_dir(tmp_path):
    task = make_task()
    with pytest.raises(DatasetNotFoundError, match=r"train\.txt not found"):
        load_split(task, "train", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="--data-dir"):
        load_split(task, "train", tmp_path / "nowhere")
    with pytest.raises(InvalidRequestError):
        load_split(task, "dev", tmp_path)  # type: ignore[arg-type]


def test_default_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIASAUDIT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.setenv("BIASAUDIT_DATA", str(tmp_path / "missing"))
    with pytest.raises(DatasetNotFoundError, match="--data-dir"):
        default_data_dir()


# --- templates -----------------------------------------------------------------------------------


def test_format_example_and_prompt():
    task = make_task(instruction="Rate the reviews.")
    assert task.label_words == ["negative", "positive"]
    assert task.label_continuations == [" negative", " positive"]
    assert task.format_example({"text": "great"}, 1) == "Review: great\nSentiment: positive"
    assert task.format_example({"text": "great"}) == "Review: great\nSentiment:"
    demos = [Example({"text": "bad"}, 0), Example({"text": "good {x}"}, 1)]
    expected = (
        "Rate the reviews.\n\nReview: bad\nSentiment: negative\n\n"
        "Review: good {x}\nSentiment: positive\n\nReview: meh\nSentiment:"
    )
    assert task.build_prompt(demos, {"text": "meh"}) == expected
    assert replace(task, instruction=None).build_prompt([], {"text": "meh"}) == "Review: meh\nSentiment:"
    # The calibrators' prompt object scores the very same string.
    assert task.icl_prompt(demos).fill({"text": "meh"}) == expected
    assert task.icl_prompt(demos).labels == (" negative", " positive")


def test_format_example_two_fields_and_errors():
    task = make_task(format="superglue_jsonl", template=CB_TEMPLATE, labels=CB_LABELS)
    assert task.input_fields == ["premise", "hypothesis"]
    fields = {"premise": "P.", "hypothesis": "H"}
    assert task.format_example(fields, 2) == "P.\nquestion: H. true, false, or neither?\nanswer: neither"
    with pytest.raises(InvalidRequestError, match="hypothesis"):
        task.format_example({"premise": "P."})
    with pytest.raises(InvalidRequestError, match="label index 3"):
        task.format_example(fields, 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"template": "Review: {text}\nSentiment:"}, "must end with ' {label}'"),
        ({"template": "Review: {text}\nSentiment:{label}"}, "must end with ' {label}'"),
        ({"template": "{label} Review: {text} {label}"}, "must end with ' {label}'"),
        ({"template": "Sentiment: {label}"}, "at least one input slot"),
        ({"template": "Review: {txt}\nSentiment: {label}"}, "'txt'"),
        ({"template": "Review: {text!r}\nSentiment: {label}"}, "plain name"),
        ({"labels": {}}, "at least one"),
        ({"labels": {"0": "good", "1": "good"}}, "unique"),
        ({"labels": {"0": " good", "1": "bad"}}, "surrounding spaces"),
        ({"labels": {"0": True}}, "expected str"),
        ({"format": "tsv"}, "not one of"),
        ({"test": "train.txt"}, "demo_pool_size"),
        ({"demo_pool_size": 10}, "same file"),
        ({"separator": ""}, "separator"),
        ({"shots": 8}, "unknown field"),
    ],
)
def test_validation_errors(overrides, message):
    with pytest.raises(ProbeValidationError, match=re.escape(message)):
        make_task(**overrides)


def test_shipped_tasks_load():
    for name in TASK_NAMES:
        task = load_task(name)
        assert task.name == name
        assert len(task.label_words) >= 2
    with pytest.raises(ProbeValidationError, match="not found"):
        load_task("no_such_task")


# --- sampling ------------------------------------------------------------------------------------

POOL = [Example({"text": str(i)}, i % 2) for i in range(50)]


def test_sample_demonstrations_reproducible():
    first = sample_demonstrations(POOL, 8, seed=3)
    assert first == sample_demonstrations(POOL, 8, seed=3)
    assert first != sample_demonstrations(POOL, 8, seed=4)
    assert len({e.fields["text"] for e in first}) == 8
    with pytest.raises(InvalidRequestError):
        sample_demonstrations(POOL, 51, seed=0)


def test_sample_test_frozen_and_ordered():
    subset = sample_test(POOL, n_max=10)
    assert subset == sample_test(POOL, n_max=10, seed=0)
    indices = [int(e.fields["text"]) for e in subset]
    assert indices == sorted(indices) and len(indices) == 10
    assert sample_test(POOL, n_max=50) == POOL


def test_shared_file_split_is_disjoint(tmp_path):
    write(tmp_path / "all.txt", "".join(f"{i % 2} s{i}\n" for i in range(20)))
    task = make_task(train="all.txt", test="all.txt", demo_pool_size=5)
    train, test = load_split(task, "train", tmp_path), load_split(task, "test", tmp_path)
    assert len(train) == 5 and len(test) == 15
    assert {e.fields["text"] for e in train}.isdisjoint(e.fields["text"] for e in test)
    assert load_split(task, "train", tmp_path) == train
    too_big = make_task(train="all.txt", test="all.txt", demo_pool_size=20)
    with pytest.raises(DatasetFormatError, match="demo_pool_size=20"):
        load_split(too_big, "train", tmp_path)


# --- the real datasets ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (SHARED_DATA / "fewshot_cls").is_dir():
        pytest.skip(f"{SHARED_DATA / 'fewshot_cls'} not found: the shared datasets live beside the repo")
    return SHARED_DATA


@pytest.mark.parametrize(
    ("name", "n_train", "n_test"),
    [("sst2", 6920, 1821), ("agnews", 500, 500), ("trec", 5452, 500), ("cb", 250, 56), ("rte", 2490, 277)],
)
def test_real_row_counts(data_dir, name, n_train, n_test):
    task = load_task(name)
    train, test = load_split(task, "train", data_dir), load_split(task, "test", data_dir)
    assert (len(train), len(test)) == (n_train, n_test)
    assert {e.label for e in test} == set(range(len(task.labels)))
    assert len(sample_test(test)) == min(500, n_test)


def test_real_agnews_split_covers_the_file_once(data_dir):
    task = load_task("agnews")
    whole = read_examples(task, data_dir / task.test)
    assert len(whole) == 1000
    train, test = load_split(task, "train", data_dir), load_split(task, "test", data_dir)
    assert sorted(map(repr, train + test)) == sorted(map(repr, whole))


def test_label_words_have_distinct_first_tokens(tokenizer):
    for name in TASK_NAMES:
        task = load_task(name)
        first = [tokenizer(c, add_special_tokens=False).input_ids[0] for c in task.label_continuations]
        assert len(set(first)) == len(first), f"{name}: {task.label_continuations} share a first token"
