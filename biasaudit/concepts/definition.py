"""Concept definitions as data: ``probes/concepts/*.yaml``.

A file holds one *group* of related concepts (``gender``: male, female). Each concept has a
description (what a generator model is asked to write about) and, optionally, seed words and
templates; ``templates`` x ``seed_words`` gives concept sentences with no generation at all. Group-level
templates apply to every concept in the group, so the concepts of a pair differ only in their words --
the CAV then has to find the concept, not a difference in sentence style.

``generic.yaml`` (a group with ``kind: generic``) defines the negative class: neutral topic words
filled into the same kind of templates, plus topics for generated generic text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biasaudit.errors import InvalidRequestError
from biasaudit.probes import (
    ProbeValidationError,
    find_probe_file,
    list_probe_files,
    probe_from_mapping,
    read_probe_yaml,
)

PLACEHOLDER = "{word}"


@dataclass(frozen=True)
class ConceptSpec:
    """One concept: ``name`` (unique within its group), a one-sentence ``description``, optional
    ``seed_words`` (fillers for templates, and hints for the generator) and ``templates`` (each holds
    ``{word}``)."""

    name: str
    description: str
    seed_words: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not self.name.strip():
            raise InvalidRequestError("concept name is empty")
        if not self.description.strip():
            raise InvalidRequestError(f"concept {self.name!r}: description is empty")
        _check_templates(self.templates, f"concept {self.name!r}")
        if len(set(self.seed_words)) != len(self.seed_words):
            raise InvalidRequestError(f"concept {self.name!r}: seed_words has duplicates")


@dataclass(frozen=True)
class ConceptGroup:
    """A YAML file of concepts. ``kind`` is ``concepts`` or ``generic`` (the negative class).

    ``templates`` are shared by every concept of the group (a concept's own templates come first).
    ``topics`` (generic groups) seed generated generic text.
    """

    name: str
    description: str
    concepts: list[ConceptSpec]
    templates: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    kind: str = "concepts"
    source: str = ""

    def concept(self, name: str) -> ConceptSpec:
        for spec in self.concepts:
            if spec.name == name:
                return spec
        raise ProbeValidationError(f"{self.source or self.name}: no concept {name!r}; it has {self.names}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def templates_for(self, spec: ConceptSpec) -> list[str]:
        return list(dict.fromkeys([*spec.templates, *self.templates]))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


def _check_templates(templates: list[str], where: str) -> None:
    for t in templates:
        if PLACEHOLDER not in t:
            raise InvalidRequestError(f"{where}: template {t!r} has no {PLACEHOLDER} placeholder")


def group_from_mapping(data: Any, source: str) -> ConceptGroup:
    """Validate a parsed YAML mapping into a ``ConceptGroup``, naming ``source`` and the field on error."""
    if not isinstance(data, dict):
        raise ProbeValidationError(f"{source}: the file must hold a mapping of fields")
    raw = data.get("concepts")
    if not isinstance(raw, list) or not raw:
        raise ProbeValidationError(f"{source}: field 'concepts' must be a non-empty list of concepts")
    specs = [probe_from_mapping(ConceptSpec, item, f"{source}: concepts[{i}]") for i, item in enumerate(raw)]
    group = probe_from_mapping(ConceptGroup, {**data, "concepts": [], "source": source}, source)
    group = dataclasses.replace(group, concepts=specs)
    names = group.names
    if len(set(names)) != len(names):
        raise ProbeValidationError(f"{source}: concept names repeat: {names}")
    if group.kind not in ("concepts", "generic"):
        raise ProbeValidationError(f"{source}: field 'kind' must be 'concepts' or 'generic', not {group.kind!r}")
    try:
        _check_templates(group.templates, "group")
    except ValueError as exc:
        raise ProbeValidationError(f"{source}: {exc}") from exc
    return group


def resolve_group_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or ``concepts/<name>.yaml`` in the probe folders (``$BIASAUDIT_PROBES`` first)."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        return path
    candidate = find_probe_file(f"concepts/{name_or_path}.yaml")
    if candidate is not None:
        return candidate
    available = ", ".join(p.stem for p in list_probe_files("concepts"))
    raise ProbeValidationError(
        f"concept group {str(name_or_path)!r} not found (looked for {path} and concepts/{name_or_path}.yaml in "
        f"the probe folders); available: {available}"
    )


def load_concept_group(name_or_path: str | Path) -> ConceptGroup:
    """Load ``probes/concepts/<name>.yaml`` (or a path) and validate it."""
    path = resolve_group_path(name_or_path)
    return group_from_mapping(read_probe_yaml(path), str(path))


def shipped_groups() -> list[str]:
    """Names of the concept groups in ``probes/concepts`` (generic text excluded)."""
    return [p.stem for p in list_probe_files("concepts") if p.stem != "generic"]
