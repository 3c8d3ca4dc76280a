"""JSON files written atomically: a reader never sees half a file, even after Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes the file private; results are meant to be read
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> None:
    """Write one JSON document per line to ``path`` via a temporary file (never a half-written line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files ``write_json_atomic`` / ``write_jsonl_atomic`` left when a run was killed."""
    for pattern in (".*.json.*", ".*.jsonl.*"):
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
