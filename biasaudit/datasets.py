"""Dataset readers, in one place: the data folder, the files datasets' authors distribute, or a hub id.

Every row carries ``where`` (``path:line``, or ``hub:owner/name[split]:row``), so a malformed row is
reported where it lies: ``DatasetFormatError("…/crows_pairs_anonymized.csv:17: field 'bias_type' …")``.
The error classes and the default data folder (``$BIASAUDIT_DATA`` or ``shared/data`` beside the
checkout) are the ones the calibration tasks use.

Which source a benchmark reads (its folder in the data folder, a fetched copy, or the hub) is decided
in ``data_sources.py`` from the dataset's declaration; this module reads rows once a source is chosen:
files as their authors distribute them, ``save_to_disk`` folders, and hub ids
``owner/name[:config][@split]`` (class-label columns decoded to their names).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from biasaudit.errors import DatasetFormatError, DatasetNotFoundError


def default_data_dir() -> Path:
    """``$BIASAUDIT_DATA``, or the ``shared/data`` folder beside the repository checkout."""
    env = os.environ.get("BIASAUDIT_DATA")
    if env:
        path = Path(env)
        if not path.is_dir():
            raise DatasetNotFoundError(f"BIASAUDIT_DATA={env!r} is not a folder; fix it or pass --data-dir")
        return path
    beside_repo = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if beside_repo.is_dir():
        return beside_repo
    raise DatasetNotFoundError(
        f"no data folder found (BIASAUDIT_DATA is unset and {beside_repo} does not exist); "
        "pass --data-dir or set BIASAUDIT_DATA to the folder holding the datasets (fewshot_cls/, crows_pairs/, ...)"
    )


def folder_digest(path: Path) -> str | None:
    """SHA-256 over every file under ``path`` (relative name and content), or None when it is absent.

    Part of an audit's resume key: an edited or replaced dataset or probe file recomputes the suites
    that read it. The shipped datasets are a few MB, so hashing them costs milliseconds.
    """
    import hashlib

    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{path} not found; pass --data-dir or set BIASAUDIT_DATA") from exc
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not valid UTF-8 ({exc})") from exc


def content_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every line up to the last non-blank one; blank lines inside fail."""
    lines = read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DatasetFormatError(f"{path}:{number}: empty line")
        yield number, line


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?(@[\w.-]+)?$")


@dataclass(frozen=True)
class SourceRow:
    """One row of a dataset file (or hub split) and where it lies, with typed field accessors."""

    where: str
    fields: Mapping[str, Any]
    line: int | None = None  # 1-based line of a file row (None for hub rows)

    def fail(self, message: str) -> NoReturn:
        raise DatasetFormatError(f"{self.where}: {message}")

    def get(self, key: str) -> Any:
        if key not in self.fields:
            self.fail(f"field {key!r} is missing")
        return self.fields[key]

    def text(self, key: str) -> str:
        """A non-empty string field, stripped."""
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"field {key!r} must be a non-empty string, got {value!r}")
        return value.strip()

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        """A string field that must be one of ``allowed``."""
        value = self.get(key)
        if value not in allowed:
            self.fail(f"field {key!r} is {value!r}, expected one of {list(allowed)}")
        return str(value)

    def integer(self, key: str) -> int:
        """An integer field (a string of digits, as CSV gives it, is accepted too)."""
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(f"field {key!r} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            self.fail(f"field {key!r} must be an integer, got {value!r}")


def is_hub_id(source: str | Path) -> bool:
    """Whether ``source`` names a hub dataset rather than a local path (an existing path always wins)."""
    return isinstance(source, str) and not Path(source).exists() and bool(_HUB_ID.match(source))


def parse_hub_id(hub_id: str) -> tuple[str, str | None, str | None]:
    """``owner/name[:config][@split]`` -> (name, config, split)."""
    rest, _, split = hub_id.partition("@")
    name, _, config = rest.partition(":")
    return name, config or None, split or None


def hub_rows(hub_id: str) -> list[SourceRow]:
    """Rows of a hub dataset, ``owner/name[:config][@split]``: the named split, else ``test``, else the only one."""
    from biasaudit.models import hub_reachable

    name, config, split = parse_hub_id(hub_id)
    # Checked up front: ``datasets`` retries an unreachable hub for half a minute before it gives up.
    if not hub_reachable():
        raise DatasetNotFoundError(
            f"{hub_id!r} is not a local folder, and the Hugging Face hub is unreachable (or HF_HUB_OFFLINE is "
            "set); pass a local folder holding the files as their authors distribute them, or a folder "
            "saved with datasets' save_to_disk"
        )
    try:
        import datasets

        loaded = datasets.load_dataset(name, config)
    except Exception as exc:  # offline, unknown id, gated... every cause gets the same advice
        raise DatasetNotFoundError(
            f"{hub_id!r} is not a local folder and could not be loaded from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc)[:200]}); the hub may be unreachable: pass a local folder "
            "holding the files as their authors distribute them"
        ) from exc
    return dataset_rows(loaded, f"hub:{name}{':' + config if config else ''}", split)


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file())


def with_split(source: str | Path) -> tuple[Path, str | None]:
    """``PATH[@split]`` -> (path, split); a path that exists as written keeps any ``@`` it has."""
    text = str(source)
    if "@" in text and not Path(text).exists():
        base, _, split = text.rpartition("@")
        return Path(base), split or None
    return Path(text), None


def saved_dataset_rows(source: str | Path) -> list[SourceRow]:
    """Rows of a ``save_to_disk`` folder, ``PATH[@split]`` (the split rule of ``hub_rows``)."""
    import datasets

    path, split = with_split(source)
    return dataset_rows(datasets.load_from_disk(str(path)), str(path), split)


def dataset_rows(loaded: Any, where: str, split: str | None) -> list[SourceRow]:
    """The rows of one split of a loaded ``datasets`` object; class-label ints become their names.

    ``split``: the one named, else ``test``, else the only split; every row's location is
    ``<where>[<split>]:<row>`` (1-based), as a file row's is ``file:line``.
    """
    import datasets

    if not isinstance(loaded, Mapping):  # one Dataset: its only split
        loaded = {str(getattr(loaded, "split", None) or "all"): loaded}
    splits = list(loaded.keys())
    if split is not None and split not in splits:
        raise DatasetNotFoundError(f"{where} has no split {split!r}; its splits: {splits}")
    if split is None:
        if "test" not in splits and len(splits) != 1:
            raise DatasetNotFoundError(f"{where} has splits {splits} and none is 'test'; name one with @SPLIT")
        split = "test" if "test" in splits else splits[0]
    table = loaded[split]
    labels = {
        key: feature.int2str
        for key, feature in getattr(table, "features", {}).items()
        if isinstance(feature, datasets.ClassLabel)
    }
    rows = []
    for i, record in enumerate(table):
        fields = {k: labels[k](v) if k in labels and isinstance(v, int) else v for k, v in record.items()}
        rows.append(SourceRow(f"{where}[{split}]:{i + 1}", fields))
    return rows


# --- files as distributed ----------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[SourceRow]:
    """One JSON object per line."""
    for number, line in content_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield SourceRow(f"{path}:{number}", record, number)


def read_table(path: Path, required: Sequence[str], *, delimiter: str = ",") -> Iterator[SourceRow]:
    """A CSV/TSV file with a header row that must name every ``required`` column.

    Line numbers are those of the file (a quoted field may span lines: the row's first line counts).
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    start = 1
    for cells in reader:
        records.append((start, cells))
        start = reader.line_num + 1
    while records and not any(cell.strip() for cell in records[-1][1]):
        records.pop()
    if not records:
        raise DatasetFormatError(f"{path}:1: the file is empty; expected a header row")
    header = records[0][1]
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetFormatError(f"{path}:1: header lacks column(s) {missing}; it has {header}")
    for number, cells in records[1:]:
        if not any(cell.strip() for cell in cells):
            raise DatasetFormatError(f"{path}:{number}: empty row")
        if len(cells) != len(header):
            raise DatasetFormatError(f"{path}:{number}: expected {len(header)} columns, got {len(cells)}")
        yield SourceRow(f"{path}:{number}", dict(zip(header, cells, strict=True)))


def read_json_array(path: Path) -> Iterator[SourceRow]:
    """A JSON file holding one array of objects (StrategyQA's format); each row's ``where`` is the line
    its object starts on, so errors point into the file as they do for JSONL."""
    text = read_text(path)
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise DatasetFormatError(f"{path}:1: expected a JSON array of objects")
    pos = _skip_space(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path}:{line}: expected a JSON object, got {type(record).__name__}")
        yield SourceRow(f"{path}:{line}", record)
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        raise DatasetFormatError(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected ',' or ']' in the array")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
