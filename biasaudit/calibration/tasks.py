"""Few-shot classification tasks for ICL label-bias calibration, defined as data in ``probes/icl/``.

A task file says where the labelled data lies (relative to the shared data folder, never inside the
repo), how one example reads as a demonstration (``template``), and which word stands for each gold
label. This module loads such a file, parses the four raw formats the calibration papers ship
(Zhao et al. 2021's copies of SST-2, AG News, TREC, and SuperGLUE CB/RTE), and samples demonstrations
and evaluation subsets the way Fei et al. (ACL 2023) do: k demonstrations drawn at random per seed,
at most 500 test examples frozen with seed 0 (docs/methods.md §3).

Prompt shape: ``instruction? + demo_1 + sep + ... + demo_k + sep + query``, where a demonstration is
the template filled with its label word, and the query is the template cut right before the
`` {label}`` slot, so that the scored continuation is the label word with its leading space
(``"...Sentiment:"`` + ``" positive"``) and a demonstration reads exactly like query + continuation.
"""

from __future__ import annotations

import csv
import io
import random
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from biasaudit.calibration.prompt import ICLPrompt, build_icl_prompt
from biasaudit.datasets import content_lines, default_data_dir, read_jsonl, read_text
from biasaudit.errors import DatasetFormatError, DatasetNotFoundError, InvalidRequestError
from biasaudit.probes import load_probe

LABEL_SLOT = "{label}"

# The fields each raw format yields per example; a template may use any of them.
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "sst2_lines": ("text",),
    "agnews_csv": ("text", "title", "description"),
    "trec_lines": ("text",),
    "superglue_jsonl": ("premise", "hypothesis"),
}

AGNEWS_HEADER = ["Class Index", "Title", "Description"]

# Seed of the split that turns one labelled file into a demonstration pool and an evaluation set
# (AG News: only a 1000-row test sample is available, so demonstrations come from its other rows).
DEMO_POOL_SEED = 0


@dataclass(frozen=True)
class Example:
    """One labelled example: its text fields (``text``, or ``premise`` + ``hypothesis``...) and label.

    ``label`` indexes the task's label list (``ICLTask.label_words``), in the order of the YAML file.
    """

    fields: dict[str, str]
    label: int


def _placeholders(template: str) -> list[str]:
    """Names of the ``{name}`` slots of ``template``, in order; rejects ``{0}``, ``{x.y}``, ``{x!r}``."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise InvalidRequestError(f"template slot {{{name}}} must be a plain name such as {{text}}")
        names.append(name)
    return names


@dataclass
class ICLTask:
    """Probe file schema for one few-shot classification task (``probes/icl/<name>.yaml``).

    ``labels`` maps each gold label value of the dataset, as a string, to its label word without a
    leading space; its order fixes the label indices. ``train`` and ``test`` are paths relative to the
    data folder. When both name the same file, ``demo_pool_size`` of its rows (chosen with
    ``DEMO_POOL_SEED``) form the demonstration pool and the others the evaluation set, so no
    demonstration can also be a test query.
    """

    name: str
    description: str
    format: str
    train: str
    test: str
    template: str
    labels: dict[str, str]
    instruction: str | None = None
    separator: str = "\n\n"
    demo_pool_size: int | None = None

    def validate(self) -> None:
        if self.format not in FORMAT_FIELDS:
            raise InvalidRequestError(f"field 'format': {self.format!r} is not one of {sorted(FORMAT_FIELDS)}")
        try:
            slots = _placeholders(self.template)
        except ValueError as exc:
            raise InvalidRequestError(f"field 'template': {exc}") from exc
        # The label must close the template, after one space: then a demonstration is exactly
        # query + " " + word, the same string the model is scored on.
        if slots.count("label") != 1 or not self.template.endswith(" " + LABEL_SLOT):
            raise InvalidRequestError("field 'template' must end with ' {label}' (one space, then the slot, once)")
        inputs = [s for s in slots if s != "label"]
        if not inputs:
            raise InvalidRequestError("field 'template' needs at least one input slot besides {label}")
        unknown = sorted(set(inputs) - set(FORMAT_FIELDS[self.format]))
        if unknown:
            raise InvalidRequestError(
                f"field 'template': slot(s) {unknown} not provided by format {self.format!r}; "
                f"available: {list(FORMAT_FIELDS[self.format])}"
            )
        if not self.labels:
            raise InvalidRequestError("field 'labels' must map at least one gold value to a label word")
        words = list(self.labels.values())
        if any(not w.strip() or w != w.strip() for w in words):
            raise InvalidRequestError(f"field 'labels': words must be non-empty, without surrounding spaces: {words}")
        if len(set(words)) != len(words):
            raise InvalidRequestError(f"field 'labels': label words must be unique: {words}")
        if not self.separator:
            raise InvalidRequestError("field 'separator' must not be empty")
        for key in ("train", "test"):
            if Path(getattr(self, key)).is_absolute():
                raise InvalidRequestError(f"field {key!r} must be relative to the data folder")
        if self.train == self.test:
            if self.demo_pool_size is None or self.demo_pool_size < 1:
                raise InvalidRequestError(
                    "'train' and 'test' name the same file: set 'demo_pool_size' (rows reserved for "
                    "demonstrations) so that demonstrations never appear as test queries"
                )
        elif self.demo_pool_size is not None:
            raise InvalidRequestError("field 'demo_pool_size' only applies when 'train' and 'test' are the same file")

    @property
    def label_words(self) -> list[str]:
        """Label words in label-index order (``"positive"``)."""
        return list(self.labels.values())

    @property
    def label_continuations(self) -> list[str]:
        """What is scored after the query: each label word with its leading space (``" positive"``)."""
        return [" " + w for w in self.label_words]

    @property
    def input_fields(self) -> list[str]:
        """The example fields the template shows, in order of first use (e.g. premise, hypothesis)."""
        return list(dict.fromkeys(s for s in _placeholders(self.template) if s != "label"))

    @property
    def query_template(self) -> str:
        """The template cut right before `` {label}``: filled, it ends with e.g. ``"Sentiment:"``."""
        return self.template[: -len(" " + LABEL_SLOT)]

    def format_example(self, fields: Mapping[str, str], label: int | None = None) -> str:
        """A demonstration (``label`` given: the template with that label's word) or a query (no label)."""
        missing = [f for f in self.input_fields if f not in fields]
        if missing:
            raise InvalidRequestError(f"task {self.name!r}: example lacks field(s) {missing}")
        values = {f: fields[f] for f in self.input_fields}
        if label is None:
            return self.query_template.format(**values)
        if not 0 <= label < len(self.labels):
            raise InvalidRequestError(f"task {self.name!r}: label index {label} outside 0..{len(self.labels) - 1}")
        return self.template.format(**values, label=self.label_words[label])

    def prompt_prefix(self, demonstrations: Sequence[Example]) -> str:
        """Everything before the query: instruction and demonstrations, each followed by the separator."""
        blocks = [self.instruction] if self.instruction else []
        blocks += [self.format_example(d.fields, d.label) for d in demonstrations]
        return "".join(block + self.separator for block in blocks)

    def build_prompt(self, demonstrations: Sequence[Example], query_fields: Mapping[str, str]) -> str:
        """The full prompt: instruction (if any), demonstrations and the unlabelled query, separated."""
        return self.prompt_prefix(demonstrations) + self.format_example(query_fields)

    def icl_prompt(self, demonstrations: Sequence[Example], **options: Any) -> ICLPrompt:
        """The calibrators' view of this task with these demonstrations (``options``: mode, ...).

        Built by ``build_icl_prompt``, the one place that turns a template and demonstrations into a
        prompt, so a task prompt and a hand-written ``ICLClassifier`` prompt cannot drift apart.
        """
        return build_icl_prompt(
            self.template,
            self.label_words,
            [(d.fields, d.label) for d in demonstrations],
            instruction=self.instruction or "",
            separator=self.separator,
            **options,
        )


def load_task(name_or_path: str | Path) -> ICLTask:
    """Load and validate a task: a name such as ``"sst2"`` (``probes/icl/sst2.yaml``) or a YAML path."""
    if Path(name_or_path).suffix in {".yaml", ".yml"} or "/" in str(name_or_path):
        return load_probe(ICLTask, name_or_path)
    return load_probe(ICLTask, f"icl/{name_or_path}")


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


def read_examples(task: ICLTask, path: Path) -> list[Example]:
    """Every example of one file, in file order, with labels mapped to the task's label indices."""
    index = {value: i for i, value in enumerate(task.labels)}
    examples = []
    for number, value, fields in _READERS[task.format](path):
        if value not in index:
            raise DatasetFormatError(
                f"{path}:{number}: gold label {value!r} is not one of task {task.name!r}'s {list(index)}"
            )
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
    root = default_data_dir() if data_dir is None else Path(data_dir)
    if not root.is_dir():
        raise DatasetNotFoundError(f"data folder {root} does not exist; pass --data-dir or set BIASAUDIT_DATA")
    examples = read_examples(task, root / getattr(task, split))
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
