"""Few-shot classification tasks for ICL label-bias calibration, defined as data in ``probes/icl/``.

A task file says where the labelled data lies (relative to the shared data folder, never inside the
repo), how one example reads as a demonstration (``template``), and which word stands for each gold
label. This module holds that schema (``ICLTask``, ``Example``) and loads such a file; reading the
labelled files and sampling from them is ``calibration/examples.py``.

Prompt shape: ``instruction? + demo_1 + sep + ... + demo_k + sep + query``, where a demonstration is
the template filled with its label word, and the query is the template cut right before the
`` {label}`` slot, so that the scored continuation is the label word with its leading space
(``"...Sentiment:"`` + ``" positive"``) and a demonstration reads exactly like query + continuation.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biasaudit.calibration.prompt import ICLPrompt, build_icl_prompt
from biasaudit.errors import InvalidRequestError
from biasaudit.probes import load_probe

LABEL_SLOT = "{label}"

# The fields each raw format yields per example; a template may use any of them.
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "sst2_lines": ("text",),
    "agnews_csv": ("text", "title", "description"),
    "trec_lines": ("text",),
    "superglue_jsonl": ("premise", "hypothesis"),
}
# Formats for a user's own task: any columns, named by ``columns`` (template slot -> column) and
# ``label_column``; ``hf`` is a datasets save_to_disk folder (``PATH[@split]``) or a hub id
# ``owner/name[:config]@split`` (calibration/examples.py reads them).
GENERIC_FORMATS = ("jsonl", "csv", "parquet", "hf")


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
    ``examples.DEMO_POOL_SEED``) form the demonstration pool and the others the evaluation set, so no
    demonstration can also be a test query. ``hub``: the task's hub copy (``data_sources.HubSource``:
    id, config, splits for train and test, column and label-value mapping), read when the data folder
    lacks the files, from a copy ``biasaudit data fetch icl`` wrote or from the hub.
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
    columns: dict[str, str] | None = None
    label_column: str = "label"
    hub: dict[str, Any] | None = None

    def slot_columns(self) -> dict[str, str]:
        """Template slot -> the column it reads (generic formats; a slot without a mapping reads its namesake)."""
        return {slot: (self.columns or {}).get(slot, slot) for slot in _placeholders(self.template) if slot != "label"}

    def validate(self) -> None:
        if self.format not in FORMAT_FIELDS and self.format not in GENERIC_FORMATS:
            known = [*sorted(FORMAT_FIELDS), *GENERIC_FORMATS]
            raise InvalidRequestError(f"field 'format': {self.format!r} is not one of {known}")
        if self.columns is not None and self.format not in GENERIC_FORMATS:
            raise InvalidRequestError(f"field 'columns' applies to the formats {list(GENERIC_FORMATS)} only")
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
        unknown = sorted(set(inputs) - set(FORMAT_FIELDS.get(self.format, inputs)))
        if unknown:
            raise InvalidRequestError(
                f"field 'template': slot(s) {unknown} not provided by format {self.format!r}; "
                f"available: {list(FORMAT_FIELDS[self.format])}"
            )
        if self.hub is not None:
            if self.format in GENERIC_FORMATS:
                raise InvalidRequestError(
                    f"field 'hub' applies to the built-in formats; format {self.format!r} names its data in train/test"
                )
            from biasaudit.data_sources import HubSource

            HubSource.parse(self.hub, "field 'hub'")
        stray = sorted(set(self.columns or {}) - set(inputs))
        if stray:
            raise InvalidRequestError(f"field 'columns': {stray} are not template slots; the slots are {inputs}")
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
