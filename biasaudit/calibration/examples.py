"""The labelled examples of an ICL task: the four raw formats, the train/test splits, and the samplers.

The formats are those the calibration papers ship (Zhao et al. 2021's copies of SST-2, AG News, TREC,
and SuperGLUE CB/RTE). Demonstrations and evaluation subsets are drawn the way Fei et al. (ACL 2023)
do: k demonstrations at random per seed, at most 500 test examples frozen with seed 0
(docs/methods.md §3). The task schema itself is ``calibration/tasks.py``.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from biasaudit.calibration.tasks import FORMAT_FIELDS, GENERIC_FORMATS, Example, ICLTask
from biasaudit.datasets import (
    SourceRow,
    content_lines,
    default_data_dir,
    hub_rows,
    is_hub_id,
    is_saved_dataset,
    read_jsonl,
    read_table,
    read_text,
    saved_dataset_rows,
    with_split,
)
from biasaudit.errors import DatasetFormatError, DatasetNotFoundError, InvalidRequestError

AGNEWS_HEADER = ["Class Index", "Title", "Description"]

# Seed of the split that turns one labelled file into a demonstration pool and an evaluation set
# (AG News: only a 1000-row test sample is available, so demonstrations come from its other rows).
DEMO_POOL_SEED = 0


# --- raw formats --------------------------------------------------------------------------------
# Each reader yields (line number, gold label value, fields) and raises DatasetFormatError naming
# file:line for a row it cannot read. Blank lines at the end of a file are ignored; elsewhere they
# are errors (a hole in the file usually means a broken copy).

Row = tuple[int, str, dict[str, str]]


def _read_sst2_lines(path: Path) -> Iterator[Row]:
    """``<0|1> <sentence>`` per line."""
    for number, line in content_lines(path):
        value, _, text = line.partition(" ")
        if not text.strip():
            raise DatasetFormatError(f"{path}:{number}: expected '<label> <sentence>', got {line[:80]!r}")
        yield number, value, {"text": text.strip()}


def _clean_agnews(text: str) -> str:
    # The reference code's "basic cleaning" (Zhao et al. 2021, kept by Fei et al. 2023): the corpus
    # spells apostrophes and quotes as HTML-entity remnants and line breaks as backslashes.
    return text.replace(" #39;s", "'s").replace(" quot;", '"').replace("\\", " ").replace(" #39;ll", "'ll")


def _read_agnews_csv(path: Path) -> Iterator[Row]:
    """CSV with header ``Class Index,Title,Description``; text = ``Title. Description`` (as the papers)."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    rows = [(reader.line_num, row) for row in reader]
    while rows and not any(cell.strip() for cell in rows[-1][1]):
        rows.pop()
    if not rows or rows[0][1] != AGNEWS_HEADER:
        got = rows[0][1] if rows else "nothing"
        raise DatasetFormatError(f"{path}:1: expected the header {','.join(AGNEWS_HEADER)}, got {got}")
    for number, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            raise DatasetFormatError(f"{path}:{number}: empty line")
        if len(row) != 3:
            raise DatasetFormatError(f"{path}:{number}: expected 3 columns, got {len(row)}")
        value, title, description = row
        fields = {
            "text": _clean_agnews(f"{title}. {description}"),
            "title": _clean_agnews(title),
            "description": _clean_agnews(description),
        }
        yield number, value.strip(), fields


def _clean_trec(text: str) -> str:
    # The reference code's detokenisation of the Penn-Treebank-style questions ("What 's ... ?").
    return text.replace(" 's", "'s").replace("`` ", '"').replace(" ''", '"').replace(" ?", "?").replace(" ,", ",")


def _read_trec_lines(path: Path) -> Iterator[Row]:
    """``COARSE:fine <question>`` per line; the coarse class is the label."""
    for number, line in content_lines(path):
        head, _, question = line.partition(" ")
        coarse, colon, fine = head.partition(":")
        if not colon or not coarse or not fine or not question.strip():
            raise DatasetFormatError(f"{path}:{number}: expected 'COARSE:fine <question>', got {line[:80]!r}")
        yield number, coarse, {"text": _clean_trec(question.strip())}


def _read_superglue_jsonl(path: Path) -> Iterator[Row]:
    """One JSON object per line with string ``premise``, ``hypothesis`` and ``label``."""
    for row in read_jsonl(path):
        record = row.fields
        for key in ("premise", "hypothesis", "label"):
            if not isinstance(record.get(key), str):
                row.fail(f"field {key!r} missing or not a string")
        assert row.line is not None
        yield (
            row.line,
            record["label"],
            {"premise": record["premise"].strip(), "hypothesis": record["hypothesis"].strip()},
        )


_READERS = {
    "sst2_lines": _read_sst2_lines,
    "agnews_csv": _read_agnews_csv,
    "trec_lines": _read_trec_lines,
    "superglue_jsonl": _read_superglue_jsonl,
}


def _generic_rows(task: ICLTask, source: Path | str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(where, gold label value, fields) of a user task's rows: ``task.columns`` names the column of each
    template slot, ``task.label_column`` the gold label (its value as a string: ``True``, ``2``, a class name)."""
    mapping = task.slot_columns()
    if task.format == "jsonl":
        rows: Iterable[SourceRow] = read_jsonl(Path(source))
    elif task.format == "csv":
        rows = read_table(Path(source), [task.label_column, *mapping.values()])
    elif task.format == "parquet":
        import pandas as pd

        if not Path(source).is_file():
            raise DatasetNotFoundError(f"{source} not found")
        records = pd.read_parquet(source).to_dict(orient="records")
        rows = [SourceRow(f"{source}[row {i + 1}]", record) for i, record in enumerate(records)]
    elif isinstance(source, str):  # hf, a hub id owner/name[:config]@split (load_split decides)
        rows = hub_rows(source)
    elif is_saved_dataset(with_split(source)[0]):  # hf, a save_to_disk folder[@split]
        rows = saved_dataset_rows(source)
    else:
        raise DatasetNotFoundError(f"{source} is not a datasets save_to_disk folder (format: hf)")
    for row in rows:
        fields = {slot: str(row.get(column)).strip() for slot, column in mapping.items()}
        empty = [slot for slot, text in fields.items() if not text]
        if empty:
            row.fail(f"empty text for slot(s) {empty}")
        yield row.where, str(row.get(task.label_column)), fields


def _hub_schema_rows(task: ICLTask, rows: Iterable[SourceRow]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(where, gold label value, fields) of rows a task's hub mapping produced (``label`` and the slots)."""
    slots = [slot for slot in FORMAT_FIELDS[task.format] if "{" + slot + "}" in task.template]
    for row in rows:
        yield row.where, str(row.get("label")), {slot: row.text(slot) for slot in slots}


def read_examples(task: ICLTask, path: Path | str) -> list[Example]:
    """Every example of one file (or, for format ``hf``, dataset split), in order, labels mapped to indices."""
    if task.format in GENERIC_FORMATS:
        return _indexed(task, _generic_rows(task, path))
    return _indexed(task, ((f"{path}:{number}", v, fields) for number, v, fields in _READERS[task.format](Path(path))))


def _indexed(task: ICLTask, rows: Iterable[tuple[str, str, dict[str, str]]]) -> list[Example]:
    """Examples with their gold label values mapped to the task's label indices."""
    index = {value: i for i, value in enumerate(task.labels)}
    examples = []
    for where, value, fields in rows:
        if value not in index:
            raise DatasetFormatError(f"{where}: gold label {value!r} is not one of task {task.name!r}'s {list(index)}")
        examples.append(Example(fields=fields, label=index[value]))
    return examples


def load_split(task: ICLTask, split: Literal["train", "test"], data_dir: Path | None = None) -> list[Example]:
    """The labelled examples of ``split`` (train = demonstration pool, test = evaluation set).

    ``data_dir`` defaults to ``default_data_dir()``. For a task whose train and test name one file,
    the file is split once with ``DEMO_POOL_SEED``: ``demo_pool_size`` rows are the train split, the
    others (original order kept) the test split.
    """
    if split not in ("train", "test"):
        raise InvalidRequestError(f"split must be 'train' or 'test', not {split!r}")
    if task.hub is not None:
        from biasaudit.data_sources import data_root, icl_decl, locate

        decl = icl_decl(task)
        located = locate(decl, data_root(data_dir))
        if located.kind != "files":  # a fetched copy or the hub: the declared splits, mapped
            hub = decl.hub_source
            assert hub is not None
            rows = hub.rows_from_hub(split) if located.path is None else hub.rows_from_folder(located.path, split)
            return _indexed(task, _hub_schema_rows(task, rows))
    root = default_data_dir() if data_dir is None else Path(data_dir)
    if not root.is_dir():
        raise DatasetNotFoundError(f"data folder {root} does not exist; pass --data-dir or set BIASAUDIT_DATA")
    raw = getattr(task, split)
    source: Path | str = root / raw
    if task.format == "hf" and not with_split(source)[0].exists() and is_hub_id(raw):
        source = raw  # a hub id, not a folder under the data folder
    examples = read_examples(task, source)
    if task.train != task.test:
        return examples
    assert task.demo_pool_size is not None  # validate() guarantees it for a shared file
    if task.demo_pool_size >= len(examples):
        raise DatasetFormatError(
            f"{root / task.train}: {len(examples)} rows cannot leave a test split after reserving "
            f"demo_pool_size={task.demo_pool_size} for demonstrations"
        )
    pool = set(random.Random(DEMO_POOL_SEED).sample(range(len(examples)), task.demo_pool_size))
    return [ex for i, ex in enumerate(examples) if (i in pool) == (split == "train")]


def sample_demonstrations(train: Sequence[Example], k: int, seed: int) -> list[Example]:
    """``k`` distinct demonstrations drawn at random with ``seed`` (one demo set per seed, as the papers)."""
    if not 0 <= k <= len(train):
        raise InvalidRequestError(f"cannot draw {k} demonstrations from a pool of {len(train)}")
    return random.Random(seed).sample(list(train), k)


def sample_test(test: Sequence[Example], n_max: int = 500, seed: int = 0) -> list[Example]:
    """At most ``n_max`` test examples: a subset frozen by ``seed``, kept in the original order."""
    if len(test) <= n_max:
        return list(test)
    keep = sorted(random.Random(seed).sample(range(len(test)), n_max))
    return [test[i] for i in keep]
