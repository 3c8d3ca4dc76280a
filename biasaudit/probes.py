"""Probe definitions as data: YAML files under ``probes/``, validated on load.

Adding a probe (a bias category, a prompt template set) needs a YAML file, not Python. Each method
declares the fields it reads as a dataclass; ``load_probe`` checks the file against it and names the
offending field when something is wrong.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml

from biasaudit.errors import BiasAuditError

T = TypeVar("T")


class ProbeValidationError(BiasAuditError, ValueError):
    """A probe file is missing, unreadable, or has a field of the wrong shape."""


def probes_dir() -> Path:
    """The shipped probe set: the copy an installed wheel carries (``biasaudit/probe_data``, packaged from
    ``probes/``), else the ``probes/`` folder of the source checkout (an editable install)."""
    shipped = Path(str(importlib.resources.files("biasaudit") / "probe_data"))
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[1] / "probes"


def probe_dirs() -> list[Path]:
    """Where probe files are looked up, first match wins: the folders of ``$BIASAUDIT_PROBES``
    (``os.pathsep``-separated; a file there adds a probe or replaces the shipped one of the same
    path), then the shipped set."""
    env = os.environ.get("BIASAUDIT_PROBES", "")
    return [*(Path(p) for p in env.split(os.pathsep) if p), probes_dir()]


def find_probe_file(relative: str) -> Path | None:
    """``<dir>/<relative>`` in the first of ``probe_dirs()`` that has it (None when none does)."""
    return next((d / relative for d in probe_dirs() if (d / relative).is_file()), None)


def list_probe_files(folder: str, pattern: str = "*.yaml") -> list[Path]:
    """The probe files of ``folder`` across ``probe_dirs()``, one per name (an override wins), by name."""
    found: dict[str, Path] = {}
    for directory in reversed(probe_dirs()):
        found.update({p.name: p for p in (directory / folder).glob(pattern)})
    return [found[name] for name in sorted(found)]


def resolve_probe_path(name_or_path: str | Path) -> Path:
    """A path as given, or ``<probe dir>/<name>.yaml`` (``$BIASAUDIT_PROBES`` first)."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        return path
    candidate = find_probe_file(f"{name_or_path}.yaml")
    if candidate is not None:
        return candidate
    looked = ", ".join(str(d / f"{name_or_path}.yaml") for d in probe_dirs())
    raise ProbeValidationError(f"probe {str(name_or_path)!r} not found (looked for {path}, {looked})")


def _check(value: Any, annotation: Any, where: str) -> None:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(annotation):
            try:
                _check(value, option, where)
                return
            except ProbeValidationError as exc:
                errors.append(str(exc))
        raise ProbeValidationError(errors[0])
    if annotation is type(None):
        if value is not None:
            raise ProbeValidationError(f"{where}: expected nothing, got {value!r}")
        return
    if origin is list:
        if not isinstance(value, list):
            raise ProbeValidationError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = get_args(annotation) or (Any,)
        for i, v in enumerate(value):
            _check(v, item, f"{where}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise ProbeValidationError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_t, val_t = get_args(annotation) or (Any, Any)
        for k, v in value.items():
            _check(k, key_t, f"{where} key")
            _check(v, val_t, f"{where}[{k!r}]")
        return
    if annotation is Any:
        return
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ProbeValidationError(f"{where}: expected {annotation.__name__}, got {value!r}")


def probe_from_mapping(cls: type[T], data: Any, source: str) -> T:
    """Build dataclass ``cls`` from ``data``, naming ``source`` and the field in every error."""
    if not isinstance(data, dict):
        raise ProbeValidationError(f"{source}: the file must hold a mapping of fields")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ProbeValidationError(f"{source}: unknown field(s) {unknown}; allowed: {sorted(fields)}")
    for name, field in fields.items():
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                raise ProbeValidationError(f"{source}: missing required field {name!r}")
            continue
        _check(data[name], hints[name], f"{source}: field {name!r}")
    obj = cls(**data)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            raise ProbeValidationError(f"{source}: {exc}") from exc
    return obj


def read_probe_yaml(path: Path) -> Any:
    """The parsed YAML of a probe file; a syntax error names the file."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProbeValidationError(f"{path}: not valid YAML ({exc})") from exc


def load_probe(cls: type[T], name_or_path: str | Path) -> T:
    """Load and validate a probe YAML file into dataclass ``cls``."""
    path = resolve_probe_path(name_or_path)
    return probe_from_mapping(cls, read_probe_yaml(path), str(path))
