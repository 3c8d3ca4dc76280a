"""Prompt scenarios of a negative-bias evaluation: how a yes/no item is asked, and how its answer is read.

Song, Yu, Yoon 2025 (arXiv 2511.10881) find that negative bias moves with the prompt: relevant context
and an "I don't know" option reduce it, chain-of-thought amplifies it, and the format matters more than
what the negative answer means. Each ``Scenario`` (``probes/negbias/scenarios.yaml``) is one such
format, as data: two templates (QA-derived items propose a candidate answer; native yes/no items do not),
the answer labels, and flags. A scenario turns an item into a prompt (``render``), says which item it
can ask (``applies_to``), parses a chain-of-thought reply (``parse``), and maps the literal answer -- the
label word the model chose -- to the semantic one (``semantic``: a negated question flips Yes and No).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biasaudit.errors import InvalidRequestError
from biasaudit.negbias.items import YesNoItem
from biasaudit.negbias.metrics import Answer
from biasaudit.probes import ProbeValidationError, probe_from_mapping, read_probe_yaml, resolve_probe_path

DEFAULT_SCENARIO_FILE = "negbias/scenarios"

# Label slots: labels[0] is the positive answer, labels[1] the negative one, labels[2] "I don't know".
_SLOTS: tuple[Answer, ...] = ("yes", "no", "idk")
_PLACEHOLDER = re.compile(r"\{(question|candidate|context)\}")


# Quotes a mention of the answer format is wrapped in: straight and curly double quotes, backticks.
_QUOTE_PAIRS = {'"': '"', "\u201c": "\u201d", "`": "`"}
# Markup and quotes that may sit between the parts of an answer statement ("**Answer:** 'No'").
_DECOR = r"[\s*_\"'`\u201c\u201d\u2018\u2019()\[\]]*"


def _quoted_spans(line: str) -> list[tuple[int, int]]:
    """(start, end) of each quoted passage of a line: paired double quotes (straight ones paired in order,
    an unpaired last one ignored), curly quotes and backticks, and single quotes around a passage that
    starts with "answer" (elsewhere a single quote is usually an apostrophe)."""
    spans = []
    for opening, closing in _QUOTE_PAIRS.items():
        at = 0
        while (start := line.find(opening, at)) != -1:
            end = line.find(closing, start + 1)
            if end == -1:
                break
            spans.append((start, end + 1))
            at = end + 1
    for match in re.finditer(r"['\u2018]\s*answer\b[^'\u2019]*['\u2019]", line, re.IGNORECASE):
        spans.append(match.span())
    return spans


def parse_final_answer(text: str, words: Mapping[str, Answer]) -> Answer:
    """The final answer of a free-text reply, or "fail" when it states none.

    words: {lower-case answer word: the answer it stands for}, e.g. {"yes": "yes", "no": "no"}.

    An *answer statement* is the keyword "answer" followed by one of ``words``: "Answer: No",
    "**Answer:** Yes", 'Answer: "Yes"', "the answer is no", or with words between within one sentence as
    small models write it ('The answer to the question "Is water wet" is yes.'). Case-insensitive; a
    word that merely starts with an answer ("Answer: Nope") is not one, nor is a bare "yes" without
    "answer" in front. Two kinds of statement are *mentions*, not answers, and are skipped:

    * a statement quoted as a whole -- the reply echoing the instruction's format, as in
      ``I will end my reply with "Answer: Yes" or "Answer: No".`` (a quoted *word* after an unquoted
      "answer", 'The answer is "No"', is an answer);
    * a listing of options -- an answer word joined to another by "or" or "/" ("Answer: Yes or No",
      "the answer is yes/no", "Answer: Yes or Answer: No"): a statement of both options states neither.

    The final answer is the *last* remaining statement (a reasoning model often mentions an answer
    before it commits to one; text after the statement is ignored).
    """
    if not words:
        raise InvalidRequestError("parse_final_answer needs at least one answer word")
    word = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    statement = re.compile(rf"\banswer\b(?:[^.\n]{{0,80}}?\bis\b)?[\s*_]*[:\-]?{_DECOR}({word})(?!\w)", re.IGNORECASE)
    listed_after = re.compile(rf"{_DECOR}(?:or|/){_DECOR}(?:answer{_DECOR}[:\-]?{_DECOR})?(?:{word})(?!\w)", re.I)
    listed_before = re.compile(rf"(?<!\w)(?:{word}){_DECOR}(?:or|/){_DECOR}$", re.IGNORECASE)
    final: Answer = "fail"
    for line in text.splitlines():
        spans = _quoted_spans(line)
        for match in statement.finditer(line):
            start, end = match.start(), match.end()
            if any(a <= start and end <= b for a, b in spans):
                continue  # a quoted mention of the format
            if listed_after.match(line, end) or listed_before.search(line, 0, start):
                continue  # one of several options listed
            final = words[match.group(1).lower()]
    return final


@dataclass
class Scenario:
    """One prompt format of the negative-bias evaluation (fields documented in the YAML file's header)."""

    name: str
    description: str
    qa_template: str
    native_template: str
    labels: list[str]
    chat_labels: list[str]
    uses_context: bool = False
    negated: bool = False
    offers_idk: bool = False
    chain_of_thought: bool = False
    until: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Called by ``probe_from_mapping``; every message names the offending field."""
        if not self.name.strip():
            raise InvalidRequestError("field 'name' must not be empty")
        n_labels = 3 if self.offers_idk else 2
        for key in ("labels", "chat_labels"):
            labels: list[str] = getattr(self, key)
            if len(labels) != n_labels:
                order = "positive, negative, I don't know" if self.offers_idk else "positive, negative"
                raise InvalidRequestError(
                    f"field {key!r} must hold exactly {n_labels} answers ({order}), got {len(labels)}"
                )
            words = [label.strip().lower() for label in labels]
            if any(not w for w in words) or len(set(words)) != len(words):
                raise InvalidRequestError(f"field {key!r} must hold distinct, non-empty answers, got {labels}")
        if [w.strip().lower() for w in self.labels] != [w.strip().lower() for w in self.chat_labels]:
            raise InvalidRequestError("fields 'labels' and 'chat_labels' must name the same answers (up to spaces)")
        required = {"qa_template": ["question", "candidate"], "native_template": ["question"]}
        for key, names in required.items():
            template: str = getattr(self, key)
            for name in [*names, *(["context"] if self.uses_context else [])]:
                if "{" + name + "}" not in template:
                    raise InvalidRequestError(f"field {key!r} has no {{{name}}} placeholder")
            if not self.uses_context and "{context}" in template:
                raise InvalidRequestError(f"field {key!r} has a {{context}} placeholder but 'uses_context' is false")
        if "{candidate}" in self.native_template:
            raise InvalidRequestError("field 'native_template' must not use {candidate}: native items have none")
        if any(not marker for marker in self.until):
            raise InvalidRequestError("field 'until' must not hold empty markers")

    def labels_for(self, apply_chat_template: bool) -> list[str]:
        """The answer labels to score: ``chat_labels`` after a chat template, else ``labels``."""
        return list(self.chat_labels if apply_chat_template else self.labels)

    def applies_to(self, item: YesNoItem) -> bool:
        """Whether this scenario can ask ``item`` (a context scenario needs an item with a context)."""
        return not self.uses_context or bool(item.context and item.context.strip())

    def render(self, item: YesNoItem) -> str:
        """The prompt asking ``item``: ``qa_template`` when it proposes a candidate, else ``native_template``.

        Placeholders are filled in one pass, so braces inside a question or context are left alone.
        """
        if not self.applies_to(item):
            raise InvalidRequestError(f"item {item.id!r} has no context; scenario {self.name!r} needs one")
        template = self.native_template if item.candidate is None else self.qa_template
        values = {"question": item.question, "candidate": item.candidate or "", "context": item.context or ""}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

    def literal_answer(self, label_index: int) -> Answer:
        """The literal answer of the label at ``label_index`` (0 positive word, 1 negative, 2 IDK)."""
        return _SLOTS[label_index]

    def semantic(self, literal: Answer) -> Answer:
        """The semantic answer of a literal one: a negated question flips Yes and No; IDK and fail stay."""
        if self.negated and literal in ("yes", "no"):
            return "no" if literal == "yes" else "yes"
        return literal

    def answer_words(self) -> dict[str, Answer]:
        """{lower-case label word: literal answer}, for parsing free text (plain and chat labels agree)."""
        return {label.strip().lower(): slot for label, slot in zip(self.labels, _SLOTS, strict=False)}

    def parse(self, generation: str) -> Answer:
        """The literal answer of a chain-of-thought reply, cut at the first ``until`` marker first."""
        cut = len(generation)
        for marker in self.until:
            at = generation.find(marker)
            if at != -1:
                cut = min(cut, at)
        return parse_final_answer(generation[:cut], self.answer_words())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _ScenarioFile:
    """The file schema: a name, a description and the scenarios (each checked as a ``Scenario``)."""

    name: str
    description: str
    scenarios: list[dict[str, Any]]


def load_scenarios(name_or_path: str | Path = DEFAULT_SCENARIO_FILE) -> dict[str, Scenario]:
    """{name: Scenario} of a scenario file (``probes/<name>.yaml`` or a path), in file order.

    Raises ``ProbeValidationError`` naming the file, the scenario and the field for any bad entry.
    """
    path = resolve_probe_path(name_or_path)
    spec = probe_from_mapping(_ScenarioFile, read_probe_yaml(path), str(path))
    if not spec.scenarios:
        raise ProbeValidationError(f"{path}: field 'scenarios' must not be empty")
    out: dict[str, Scenario] = {}
    for i, data in enumerate(spec.scenarios):
        label = data.get("name") if isinstance(data.get("name"), str) else None
        where = f"{path}: scenarios[{i}]" + (f" ({label})" if label else "")
        scenario = probe_from_mapping(Scenario, data, where)
        if scenario.name in out:
            raise ProbeValidationError(f"{where}: duplicate scenario name {scenario.name!r}")
        out[scenario.name] = scenario
    return out
