"""Negative-bias sources from `datasets` folders in the hub's schema (save_to_disk), any split by @SPLIT."""

from __future__ import annotations

import datasets
import pytest

from biasaudit.datasets import dataset_rows, parse_hub_id
from biasaudit.errors import DatasetNotFoundError
from biasaudit.negbias.sources import load_qa, load_yesno


def _boolq_like(folder):
    """BoolQ as the hub serves it: train and validation splits, a bool answer, the passage."""
    split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"question": [f"is it {i}" for i in range(n)], "answer": [i % 2 == 0 for i in range(n)],
         "passage": [f"passage {i}" for i in range(n)]}
    )  # fmt: skip
    datasets.DatasetDict({"train": split(4), "validation": split(3)}).save_to_disk(str(folder))
    return folder


def test_a_named_split_of_a_saved_dataset(tmp_path):
    folder = _boolq_like(tmp_path / "boolq")
    items = load_yesno(f"{folder}@validation")
    assert [(q.question, q.answer, q.context) for q in items] == [
        ("Is it 0?", True, "passage 0"), ("Is it 1?", False, "passage 1"), ("Is it 2?", True, "passage 2"),
    ]  # fmt: skip
    assert items[2].source == f"{folder}[validation]:3"
    with pytest.raises(DatasetNotFoundError, match=r"none is 'test'; name one with @SPLIT"):
        load_yesno(folder)
    with pytest.raises(DatasetNotFoundError, match="has no split 'dev'"):
        load_yesno(f"{folder}@dev")


def test_class_labels_and_answer_lists(tmp_path):
    features = datasets.Features(
        {"question": datasets.Value("string"), "answer": datasets.ClassLabel(names=["no", "yes"])}
    )
    labelled = datasets.Dataset.from_dict(
        {"question": ["is water wet", "is fire cold"], "answer": [1, 0]}, features=features
    )
    labelled.save_to_disk(str(tmp_path / "labelled"))  # a single Dataset: its only split
    assert [q.answer for q in load_yesno(tmp_path / "labelled")] == [True, False]
    rows = {"question": ["who wrote hamlet"], "answer": [["Shakespeare", "William Shakespeare"]]}
    nq = datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows)})
    nq.save_to_disk(str(tmp_path / "nq"))
    (item,) = load_qa(tmp_path / "nq")
    assert item.answers == ("Shakespeare", "William Shakespeare") and item.source.endswith("[validation]:1")


def test_hub_ids_name_config_and_split():
    assert parse_hub_id("google/boolq") == ("google/boolq", None, None)
    assert parse_hub_id("nyu-mll/glue:rte@validation") == ("nyu-mll/glue", "rte", "validation")
    with pytest.raises(DatasetNotFoundError, match="none is 'test'"):
        dataset_rows(
            datasets.DatasetDict(
                {"a": datasets.Dataset.from_dict({"x": [1]}), "b": datasets.Dataset.from_dict({"x": [2]})}
            ),
            "w",
            None,
        )
