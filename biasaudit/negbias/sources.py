"""Reading the inputs of a negative-bias set: short-answer QA and native yes/no questions.

Formats, as their authors distribute them (``../shared/data/*/README.md`` in CI):

* **NQ-Open** (JSONL): ``{"question": str, "answer": [str, ...]}``; optional ``id`` and ``context``.
* **Our fact sets** (YAML, ``probes/negbias/facts.yaml``): ``items: [{id, question, answers, type}]``.
* **BoolQ** (JSONL): ``{"question", "answer": bool, "passage", "title"}``; the passage is the context.
* **StrategyQA** (one JSON array): ``{"qid", "question", "answer": bool, "facts": [str]}``; the facts
  are the context.

A local path or a hub id (``owner/name``, loaded with ``datasets`` when the hub is reachable). Every
row keeps ``source`` = ``path:line``; a row without gold answers, a yes/no label other than
yes/no/true/false, or a repeated id is a ``DatasetFormatError`` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from biasaudit.datasets import (
    SourceRow,
    hub_rows,
    is_hub_id,
    is_saved_dataset,
    read_json_array,
    read_jsonl,
    saved_dataset_rows,
    with_split,
)
from biasaudit.errors import DatasetFormatError, DatasetNotFoundError
from biasaudit.negbias.items import QAItem, YesNoQuestion, check_unique_ids
from biasaudit.probes import ProbeValidationError, find_probe_file, probes_dir, read_probe_yaml

T = TypeVar("T")
ANSWER_TYPES = ("person", "place", "date", "number", "other")
_YES = {"yes", "true"}
_NO = {"no", "false"}


def shipped_facts() -> Path:
    """The fact set we ship, so the default audit needs no external data."""
    return find_probe_file("negbias/facts.yaml") or probes_dir() / "negbias" / "facts.yaml"


def _rows(source: str | Path) -> Iterable[SourceRow]:
    path = Path(source)
    if not path.exists() and is_hub_id(str(source)):
        return hub_rows(str(source))
    if is_saved_dataset(with_split(source)[0]):
        return saved_dataset_rows(source)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{path} not found (a JSONL/JSON/YAML file, a datasets save_to_disk folder[@split], or a hub id "
            "owner/name[:config][@split] when online)"
        )
    if path.suffix in {".yaml", ".yml"}:
        return _yaml_rows(path)
    if path.suffix == ".json":
        return read_json_array(path)
    return read_jsonl(path)


def _yaml_rows(path: Path) -> list[SourceRow]:
    """A fact-set YAML (``items:`` list); the line of each item is found from its id."""
    try:
        data = read_probe_yaml(path)
    except ProbeValidationError as exc:
        raise DatasetFormatError(str(exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise DatasetFormatError(f"{path}:1: expected a mapping with an 'items' list")
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [n for n, line in enumerate(lines, start=1) if re.match(r"\s*-\s", line)]
    rows = []
    for i, record in enumerate(data["items"]):
        line = starts[i] if i < len(starts) else 1
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path}:{line}: each item must be a mapping")
        rows.append(SourceRow(f"{path}:{line}", record))
    return rows


def _string_list(row: SourceRow, key: str) -> tuple[str, ...]:
    value = row.get(key)
    values = [value] if isinstance(value, str | int | float) and not isinstance(value, bool) else value
    if not isinstance(values, list) or not all(isinstance(v, str | int | float) for v in values):
        row.fail(f"field {key!r} must be a list of answer strings, got {value!r}")
    answers = tuple(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    if not answers:
        row.fail(f"field {key!r} has no gold answer")
    return answers


def _optional_text(row: SourceRow, key: str) -> str | None:
    value = row.fields.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = " ".join(v.strip() for v in value)
    if not isinstance(value, str):
        row.fail(f"field {key!r} must be a string (or a list of strings), got {type(value).__name__}")
    return value.strip() or None


def spread(rows: list[T], limit: int | None) -> list[T]:
    """``limit`` rows spread evenly over ``rows`` (all of them when ``limit`` is None or larger): files
    are often sorted by topic or type, and the first N would all be alike."""
    if limit is None or limit >= len(rows):
        return rows
    if limit < 1:
        raise DatasetFormatError(f"limit must be a positive number of questions, got {limit}")
    return [rows[(i * len(rows)) // limit] for i in range(limit)]


def load_qa(source: str | Path, *, limit: int | None = None) -> list[QAItem]:
    """Short-answer questions (NQ-Open JSONL or a fact-set YAML); ``limit`` keeps N spread over the file."""
    items = []
    stem = Path(str(source)).stem
    for number, row in enumerate(_rows(source), start=1):
        answer_key = "answers" if "answers" in row.fields else "answer"
        answers = _string_list(row, answer_key)
        answer_type = row.fields.get("type")
        if answer_type is not None and answer_type not in ANSWER_TYPES:
            row.fail(f"field 'type' is {answer_type!r}, expected one of {list(ANSWER_TYPES)}")
        item_id = str(row.fields.get("id", f"{stem}-{number}"))
        item = QAItem(item_id, row.text("question"), answers, row.where, _optional_text(row, "context"), answer_type)
        items.append(item)
    check_unique_ids(items)
    if not items:
        raise DatasetFormatError(f"{source}: no questions")
    return spread(items, limit)


def parse_yes_no(row: SourceRow, key: str) -> bool:
    """A yes/no label: a JSON bool, or one of yes/no/true/false in any case."""
    value = row.get(key)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in _YES:
        return True
    if text in _NO:
        return False
    row.fail(f"field {key!r} is {value!r}, expected yes/no/true/false")


def load_yesno(source: str | Path, *, limit: int | None = None) -> list[YesNoQuestion]:
    """Native yes/no questions (BoolQ JSONL, StrategyQA JSON array, or any rows with question/answer);
    ``limit`` keeps N spread over the file."""
    items = []
    stem = Path(str(source)).stem
    for number, row in enumerate(_rows(source), start=1):
        item_id = str(row.fields.get("qid", row.fields.get("id", f"{stem}-{number}")))
        context = _optional_text(row, "passage") or _optional_text(row, "facts") or _optional_text(row, "context")
        question = row.text("question")
        if not question.endswith("?"):
            question += "?"  # BoolQ questions are lower-case and unpunctuated
        items.append(YesNoQuestion(item_id, question[0].upper() + question[1:], parse_yes_no(row, "answer"),
                                   row.where, context))  # fmt: skip
    check_unique_ids(items)
    if not items:
        raise DatasetFormatError(f"{source}: no questions")
    return spread(items, limit)


_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_NUMBER_WORDS = (
    "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    "thousand|million|billion"
)


def answer_type(item: QAItem) -> str:
    """The item's declared type, else a guess from the question word and the answer's shape (used only
    to draw distractors of the same kind, so a wrong guess costs realism, not correctness)."""
    if item.answer_type:
        return item.answer_type
    question = item.question.lower()
    answer = item.answers[0].lower()
    if re.search(rf"\b(1[0-9]{{3}}|20[0-9]{{2}})\b|\b({_MONTHS})\b", answer) or question.startswith(
        ("when", "what year", "in what year", "in which year")
    ):
        return "date"
    if re.fullmatch(rf"[\d.,\s%]+|(({_NUMBER_WORDS})[\s-]*)+", answer) or question.startswith(
        ("how many", "how much", "how long", "how old")
    ):
        return "number"
    if question.startswith(("who", "whom", "whose")):
        return "person"
    if question.startswith("where"):
        return "place"
    return "other"


def load_inputs(
    qa: Sequence[str], yesno: Sequence[str], limit: int | None
) -> tuple[list[str], list[QAItem], list[YesNoQuestion]]:
    """(QA sources used, QA questions, native yes/no questions); no sources at all = the shipped facts."""
    qa_sources = list(qa) or ([] if yesno else [str(shipped_facts())])
    questions = [q for source in qa_sources for q in load_qa(source, limit=limit)]
    native = [q for source in yesno for q in load_yesno(source, limit=limit)]
    return qa_sources, questions, native
