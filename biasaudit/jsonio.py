"""JSON files written atomically: a reader never sees half a file, even after Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


def _write_atomic(path: Path, write: Callable[[TextIO], object]) -> None:
    """Create ``path`` through ``write`` into a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes the file private; results are meant to be read
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temporary file in the same folder."""

    def write(fh: TextIO) -> None:
        json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False)
        fh.write("\n")

    _write_atomic(path, write)


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> None:
    """Write one JSON document per line to ``path`` via a temporary file (never a half-written line)."""
    _write_atomic(path, lambda fh: fh.writelines(json.dumps(row, allow_nan=False) + "\n" for row in rows))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (a rendered report) to ``path`` via a temporary file."""
    _write_atomic(path, lambda fh: fh.write(text))


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files the ``write_*_atomic`` functions left when a run was killed."""
    for pattern in (".*.json.*", ".*.jsonl.*", ".*.html.*", ".*.md.*"):
        for tmp in folder.rglob(pattern):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (callers then recompute)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def dataclass_from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls(**data)`` for a config dataclass, refusing unknown keys with a message naming ``what``.

    The one way every config in the package is read back from JSON: an unknown key is a ``ConfigError``
    that names the key and the allowed ones.
    """
    from biasaudit.errors import ConfigError

    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {what} field(s) {unknown}; allowed: {sorted(names)}")
    return cls(**data)
