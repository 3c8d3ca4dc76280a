"""The records of a negative-bias evaluation set: its inputs (questions) and its yes/no items.

* ``QAItem`` -- a short-answer question with every gold alias (NQ-Open style). Knowledge probing asks
  it open-ended; the set builder turns it into yes/no items ("Is <candidate> the answer?").
* ``YesNoQuestion`` -- a native yes/no question (BoolQ, StrategyQA) with its gold answer and, where
  the source has one, a relevant context (BoolQ's passage, StrategyQA's facts).
* ``YesNoItem`` -- one item of the built set: the question, the candidate answer it proposes (None
  for a native yes/no question), the gold label (True = "Yes"), the knowledge subset, how the
  candidate was chosen, and the provenance needed to rebuild or audit it. Sets are JSONL files of
  ``YesNoItem.to_dict()`` rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from biasaudit.datasets import read_jsonl
from biasaudit.errors import DatasetFormatError

Subset = Literal["correct", "incorrect", "insufficient"]
SUBSETS: tuple[Subset, ...] = ("correct", "incorrect", "insufficient")
CandidateKind = Literal["gold", "distractor", "model_wrong", "native"]
CANDIDATE_KINDS: tuple[CandidateKind, ...] = ("gold", "distractor", "model_wrong", "native")


@dataclass(frozen=True)
class QAItem:
    """A short-answer question; ``answers`` holds every accepted alias (at least one)."""

    id: str
    question: str
    answers: tuple[str, ...]
    source: str  # "path:line" (or a name) where the row came from
    context: str | None = None
    # "person", "place", "date", "number" or "other": distractors come from questions of the same type
    # (None: inferred from the question and answers, see ``sources.answer_type``).
    answer_type: str | None = None


@dataclass(frozen=True)
class YesNoQuestion:
    """A native yes/no question; ``answer`` True means the gold answer is "Yes"."""

    id: str
    question: str
    answer: bool
    source: str
    context: str | None = None


@dataclass
class KnowledgeProbe:
    """What the model answered when asked the question open-ended (or, for a native yes/no question,
    asked it directly): the greedy answer, k sampled answers, and the subset they put the item in.

    ``n_agree``: for ``correct``, samples that also match gold; otherwise samples that agree with the
    greedy answer (and are wrong). ``reason`` says why an item is ``insufficient`` (e.g. "samples
    disagree", "generation failed twice: <error>"). ``verdict``: the greedy answer against gold
    (``matching.match_verdict``: "match", "partial" or "mismatch"; "" when not judged)."""

    greedy: str
    samples: list[str]
    greedy_correct: bool
    n_agree: int
    subset: Subset
    reason: str | None = None
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class YesNoItem:
    """One yes/no item of a negative-bias set (see the module docstring)."""

    id: str
    question: str
    candidate: str | None
    label: bool
    subset: Subset
    kind: CandidateKind
    source: str
    source_id: str
    context: str | None = None
    gold_answers: list[str] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "<dict>") -> YesNoItem:
        required = ("id", "question", "candidate", "label", "subset", "kind", "source", "source_id")
        missing = [k for k in required if k not in data]
        if missing:
            raise DatasetFormatError(f"{where}: missing field(s) {missing}")
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise DatasetFormatError(f"{where}: unknown field(s) {unknown}")
        if not isinstance(data["label"], bool):
            raise DatasetFormatError(f"{where}: field 'label' must be true or false, got {data['label']!r}")
        if data["subset"] not in SUBSETS:
            raise DatasetFormatError(f"{where}: field 'subset' is {data['subset']!r}, expected one of {SUBSETS}")
        if data["kind"] not in CANDIDATE_KINDS:
            raise DatasetFormatError(f"{where}: field 'kind' is {data['kind']!r}, expected one of {CANDIDATE_KINDS}")
        if not isinstance(data["question"], str) or not data["question"].strip():
            raise DatasetFormatError(f"{where}: field 'question' must be a non-empty string")
        return cls(**data)


def save_items(items: Sequence[YesNoItem], path: str | Path) -> Path:
    """Write a set as JSONL (atomically: a half-written set never replaces a good one)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out


def load_items(path: str | Path) -> list[YesNoItem]:
    """Read a set written by ``save_items``; a bad row or a repeated id is reported as file:line."""
    src = Path(path)
    items: list[YesNoItem] = []
    seen: dict[str, int] = {}
    for row in read_jsonl(src):
        item = YesNoItem.from_dict(dict(row.fields), row.where)
        if item.id in seen:
            row.fail(f"duplicate id {item.id!r} (first at line {seen[item.id]})")
        seen[item.id] = row.line or 0
        items.append(item)
    if not items:
        raise DatasetFormatError(f"{src}: the set is empty")
    return items


def check_unique_ids(rows: Iterable[QAItem | YesNoQuestion]) -> None:
    """Refuse two rows with one id, naming where both lie."""
    seen: dict[str, str] = {}
    for row in rows:
        if row.id in seen:
            raise DatasetFormatError(f"{row.source}: duplicate id {row.id!r} (first at {seen[row.id]})")
        seen[row.id] = row.source
