"""A user's own ICL task: jsonl / csv / parquet / hf (datasets) files with a column mapping in the task YAML."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

from biasaudit.calibration.examples import load_split, sample_demonstrations
from biasaudit.calibration.tasks import load_task
from biasaudit.errors import DatasetFormatError
from biasaudit.probes import ProbeValidationError

ROWS = [{"sentence": f"review number {i}", "gold": i % 2, "extra": "x"} for i in range(6)]


def _task(tmp_path, fmt, train, test, **extra):
    spec = {
        "name": "mine", "description": "a user task", "format": fmt, "train": train, "test": test,
        "template": "Text: {text}\nAnswer: {label}", "labels": {"0": "no", "1": "yes"},
        "columns": {"text": "sentence"}, "label_column": "gold", **extra,
    }  # fmt: skip
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return load_task(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_file_formats_with_a_column_mapping(tmp_path, fmt):
    data = tmp_path / "data" / "mine"
    data.mkdir(parents=True)
    frame = pd.DataFrame(ROWS)
    for split, part in (("train", frame.iloc[:4]), ("test", frame.iloc[4:])):
        path = data / f"{split}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in part.to_dict(orient="records")))
        elif fmt == "csv":
            part.to_csv(path, index=False)
        else:
            part.to_parquet(path)
    task = _task(tmp_path, fmt, f"mine/train.{fmt}", f"mine/test.{fmt}")
    train, test = load_split(task, "train", tmp_path / "data"), load_split(task, "test", tmp_path / "data")
    assert [(e.fields, e.label) for e in test] == [({"text": "review number 4"}, 0), ({"text": "review number 5"}, 1)]
    prompt = task.icl_prompt(sample_demonstrations(train, 2, seed=0))
    assert prompt.prefix.count("Text: review number") == 2 and prompt.labels == (" no", " yes")


def test_a_datasets_folder_with_class_labels_and_named_splits(tmp_path):
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "gold": datasets.ClassLabel(names=["neg", "pos"])}
    )
    split = lambda rows: datasets.Dataset.from_dict(  # noqa: E731
        {"sentence": [r["sentence"] for r in rows], "gold": [r["gold"] for r in rows]}, features=features
    )
    datasets.DatasetDict({"train": split(ROWS[:4]), "validation": split(ROWS[4:])}).save_to_disk(
        str(tmp_path / "hfdata")
    )
    task = _task(tmp_path, "hf", "hfdata@train", "hfdata@validation", labels={"neg": "no", "pos": "yes"})
    test = load_split(task, "test", tmp_path)
    assert [e.label for e in test] == [0, 1]


def test_errors_name_the_row_and_the_field(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.jsonl").write_text('{"sentence": "ok", "gold": 0}\n{"sentence": "bad", "gold": 7}\n')
    task = _task(tmp_path, "jsonl", "d/t.jsonl", "d/t.jsonl", demo_pool_size=1)
    with pytest.raises(DatasetFormatError, match=r"t\.jsonl:2: gold label '7' is not one of"):
        load_split(task, "test", tmp_path)
    (tmp_path / "d" / "t.jsonl").write_text('{"text": "no sentence column", "gold": 0}\n')
    with pytest.raises(DatasetFormatError, match=r"t\.jsonl:1: field 'sentence' is missing"):
        load_split(task, "test", tmp_path)
    with pytest.raises(ProbeValidationError, match="applies to the formats"):
        _task(tmp_path, "sst2_lines", "a", "b")
    with pytest.raises(ProbeValidationError, match="are not template slots"):
        _task(tmp_path, "jsonl", "a", "b", columns={"txt": "sentence"})
