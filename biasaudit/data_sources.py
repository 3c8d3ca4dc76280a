"""Where each dataset a suite reads comes from, declared once: the authors' files, a fetched copy, or the hub.

A dataset is declared in its probe YAML: ``probes/datasets/<name>.yaml`` for the bias benchmarks, the
``hub:`` block of ``probes/icl/<task>.yaml`` for the few-shot tasks. A declaration names the folder
under the data folder, the files as their authors distribute them, and a hub copy (id, config(s),
splits, revision, and how its schema maps onto the authors' fields: renamed columns, class-label
values, or a named reshape where the hub nests what the files keep flat).

An audit looks, in order, in ``--data-dir``, ``$BIASAUDIT_DATA``, ``shared/data`` beside the checkout
(the first that is set or exists), then the hub. In that folder, ``<folder>/`` may hold the authors'
files, or the copy ``biasaudit data fetch`` writes there: ``datasets``' ``save_to_disk`` folder of the
hub splits (one subfolder per config where there are several), read back through the same mapping as
the hub. Every row keeps its location (``file:line``, ``<folder>[split]:row`` or ``hub:id[split]:row``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from biasaudit.datasets import (
    SourceRow,
    dataset_rows,
    default_data_dir,
    hub_rows,
    is_hub_id,
    is_saved_dataset,
    parse_hub_id,
)
from biasaudit.errors import DatasetFormatError, DatasetNotFoundError, InvalidRequestError
from biasaudit.probes import ProbeValidationError, list_probe_files, probe_from_mapping, read_probe_yaml

Role = Literal["train", "test"]

# Hub layouts that are not a column rename: name -> fn(record, config) -> fields of the authors' files.
RESHAPES: dict[str, Callable[[Mapping[str, Any], str | None], dict[str, Any]]] = {}


def _reshape(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    def register(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        RESHAPES[name] = fn
        return fn

    return register


@_reshape("stereoset_sentences")
def _stereoset_sentences(record: Mapping[str, Any], config: str | None) -> dict[str, Any]:
    """McGill-NLP/stereoset nests the three candidates as columns of ``sentences`` with integer gold
    labels (0 anti-stereotype, 1 stereotype, 2 unrelated); the flat file keeps one field per label."""
    names = ("anti-stereotype", "stereotype", "unrelated")
    sentences = record.get("sentences")
    if not isinstance(sentences, Mapping) or not {"sentence", "gold_label"} <= set(sentences):
        raise DatasetFormatError("field 'sentences' must hold 'sentence' and 'gold_label' lists")
    by_label: dict[str, str] = {}
    for text, gold in zip(sentences["sentence"], sentences["gold_label"], strict=True):
        label = names[gold] if isinstance(gold, int) and 0 <= gold < len(names) else str(gold)
        if label in by_label:
            raise DatasetFormatError(f"two sentences carry the gold label {label!r}")
        by_label[label] = text
    fields = {k: v for k, v in record.items() if k != "sentences"}
    return {**fields, "type": config, **by_label}


@dataclass(frozen=True)
class HubSource:
    """A hub copy of a dataset and how its rows map onto the fields of the authors' files.

    ``splits``: role (``test``; ``train`` for few-shot demonstrations) -> hub split. ``columns``: field
    of the authors' files -> hub column. ``values``: field -> {hub value -> value in the files}
    (class-label columns arrive decoded to their names first). ``configs``: several configs read as
    one dataset (``reshape`` is told which config a row came from).
    """

    id: str
    splits: dict[str, str]
    config: str | None = None
    configs: list[str] | None = None
    revision: str | None = None
    columns: dict[str, str] | None = None
    values: dict[str, dict[str, str]] | None = None
    reshape: str | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> HubSource:
        hub = probe_from_mapping(cls, data, where)
        if hub.config is not None and hub.configs is not None:
            raise ProbeValidationError(f"{where}: give 'config' or 'configs', not both")
        if hub.reshape is not None and hub.reshape not in RESHAPES:
            raise ProbeValidationError(f"{where}: reshape {hub.reshape!r} is not one of {sorted(RESHAPES)}")
        if not hub.splits or any(role not in ("train", "test") for role in hub.splits):
            raise ProbeValidationError(f"{where}: 'splits' maps roles train/test to hub splits, got {hub.splits}")
        return hub

    @property
    def config_names(self) -> list[str | None]:
        return list(self.configs) if self.configs else [self.config]

    def split(self, role: Role) -> str:
        if role not in self.splits:
            raise InvalidRequestError(f"{self.id} declares no {role!r} split (it has {self.splits})")
        return self.splits[role]

    def mapped(self, rows: Iterable[SourceRow], config: str | None) -> list[SourceRow]:
        """Rows of the hub schema as rows of the authors' files (same locations)."""
        out = []
        for row in rows:
            fields = dict(row.fields)
            for target, column in (self.columns or {}).items():
                fields[target] = row.get(column)
            for target, table in (self.values or {}).items():
                value = fields.get(target)
                if str(value) not in table:
                    row.fail(f"field {target!r} is {value!r}, which the hub mapping does not know ({sorted(table)})")
                fields[target] = table[str(value)]
            if self.reshape:
                try:
                    fields = RESHAPES[self.reshape](fields, config)
                except (ValueError, TypeError, IndexError) as exc:
                    row.fail(f"cannot reshape the hub row ({exc})")
            out.append(SourceRow(row.where, fields))
        return out

    def rows_from_folder(self, folder: Path, role: Role) -> list[SourceRow]:
        """Rows of ``role`` from the folder ``fetch`` wrote (one subfolder per config where there are several)."""
        import datasets

        rows = []
        for config in self.config_names:
            path = folder / str(config) if self.configs else folder
            if not is_saved_dataset(path):
                raise DatasetNotFoundError(f"{path} is not a folder written by datasets' save_to_disk")
            rows += self.mapped(dataset_rows(datasets.load_from_disk(str(path)), str(path), self.split(role)), config)
        return rows

    def rows_from_hub(self, role: Role) -> list[SourceRow]:
        """Rows of ``role`` loaded from the hub (``datasets`` caches them)."""
        rows = []
        for config, loaded in self.load().items():
            where = f"hub:{self.id}{':' + config if config else ''}"
            rows += self.mapped(dataset_rows(loaded, where, self.split(role)), config)
        return rows

    def load(self) -> dict[str | None, Any]:
        """``datasets.load_dataset`` of every declared config and split (an unreachable hub fails fast)."""
        from biasaudit.models import hub_reachable

        if not hub_reachable():
            raise DatasetNotFoundError(
                f"the Hugging Face hub is unreachable (or HF_HUB_OFFLINE is set), so {self.id} cannot be loaded; "
                "run `biasaudit data fetch` where it is reachable and pass the folder with --data-dir"
            )
        import datasets

        loaded = {}
        for config in self.config_names:
            try:
                splits = sorted(set(self.splits.values()))
                parts = datasets.load_dataset(self.id, config, revision=self.revision, split=splits)
            except Exception as exc:  # unknown id, gated, network... the same advice for each
                raise DatasetNotFoundError(
                    f"{self.id}{':' + config if config else ''} could not be loaded from the hub "
                    f"({type(exc).__name__}: {str(exc)[:200]}); pass a local folder with --data-dir"
                ) from exc
            loaded[config] = datasets.DatasetDict(dict(zip(splits, parts, strict=True)))
        return loaded


@dataclass(frozen=True)
class DatasetDecl:
    """One dataset a suite reads (``probes/datasets/<name>.yaml``, or built from an ICL task file).

    ``folder``: its folder under the data folder; ``files``: the authors' files in it (glob patterns);
    ``origin``: where the authors distribute them; ``hub``: its hub copy, or None when none keeps the
    information the suite needs (then ``origin`` is the only way to get it).
    """

    name: str
    description: str
    folder: str
    files: list[str]
    origin: str
    license: str
    suites: list[str] = field(default_factory=list)
    hub: dict[str, Any] | None = None

    def validate(self) -> None:
        if not self.files:
            raise InvalidRequestError("field 'files' must name at least one file of the authors' layout")
        self.hub_source  # noqa: B018 - parse (and so check) the hub block

    @cached_property
    def hub_source(self) -> HubSource | None:
        """The parsed ``hub`` block (parsed once; ``validate`` checks it when the declaration loads)."""
        return None if self.hub is None else HubSource.parse(self.hub, f"dataset {self.name!r}: field 'hub'")

    def has_files(self, folder: Path) -> bool:
        return folder.is_dir() and all(any(folder.glob(pattern)) for pattern in self.files)

    def is_fetched(self, folder: Path) -> bool:
        hub = self.hub_source
        if hub is None:
            return False
        return all(is_saved_dataset(folder / c) for c in hub.configs) if hub.configs else is_saved_dataset(folder)

    def fetch_hint(self, suite: str | None = None) -> str:
        if self.hub is None:
            return f"get the authors' files from {self.origin} into <data folder>/{self.folder}/"
        return f"biasaudit data fetch {suite or self.suites[0]} --to DIR, then pass --data-dir DIR"


@dataclass(frozen=True)
class Located:
    """Where a dataset was found: the authors' files, a fetched copy, or the hub (``path`` None)."""

    kind: Literal["files", "fetched", "hub"]
    path: Path | None
    looked: list[str]


def benchmark_decls() -> dict[str, DatasetDecl]:
    """The declared benchmark datasets (``probes/datasets/*.yaml``, ``$BIASAUDIT_PROBES`` overrides), by name."""
    decls = {}
    for path in list_probe_files("datasets"):
        decl = probe_from_mapping(DatasetDecl, read_probe_yaml(path), str(path))
        decls[decl.name] = decl
    return decls


def dataset_decl(name: str) -> DatasetDecl:
    """The declaration of benchmark dataset ``name``."""
    decls = benchmark_decls()
    if name not in decls:
        raise InvalidRequestError(f"no dataset declaration {name!r} in probes/datasets/; declared: {sorted(decls)}")
    return decls[name]


def icl_decl(task: Any) -> DatasetDecl:
    """The dataset of an ICL task (``calibration.tasks.ICLTask``): its folder and files, and its hub block."""
    train, test = Path(task.train), Path(task.test)
    return DatasetDecl(
        name=task.name,
        description=task.description,
        folder=str(train.parent),
        files=sorted({train.name, test.name}),
        origin=f"the copy the ICL calibration papers use (docs/calibration.md, task {task.name})",
        license="see the dataset card",
        suites=["icl"],
        hub=task.hub,
    )


def suite_datasets(folders: Iterable[str]) -> list[DatasetDecl]:
    """The datasets behind a suite's data folders (``fewshot_cls`` stands for the five ICL tasks)."""
    out = []
    decls = benchmark_decls()
    for folder in folders:
        if folder == "fewshot_cls":
            from biasaudit.calibration.evaluate import TASKS
            from biasaudit.calibration.tasks import load_task

            out += [icl_decl(load_task(name)) for name in TASKS]
        elif folder in decls:
            out.append(decls[folder])
        else:
            raise InvalidRequestError(f"no dataset declaration for folder {folder!r} (probes/datasets/)")
    return out


def data_root(data_dir: str | Path | None) -> Path | None:
    """``data_dir``, else ``$BIASAUDIT_DATA`` / ``shared/data`` beside the checkout, else None."""
    if data_dir is not None:
        return Path(data_dir)
    try:
        return default_data_dir()
    except DatasetNotFoundError:
        return None


def locate(decl: DatasetDecl, root: Path | None, *, use_hub: bool = True) -> Located:
    """Where ``decl`` is: ``root`` itself or ``root/<folder>`` holding the authors' files or a fetched
    copy, else the hub when it is reachable; otherwise a ``DatasetNotFoundError`` that says how to get it."""
    looked = []
    if root is not None:
        for folder in dict.fromkeys((root / decl.folder, root)):
            looked.append(str(folder))
            if decl.has_files(folder):
                return Located("files", folder, looked)
            if decl.is_fetched(folder):
                return Located("fetched", folder, looked)
    hub = decl.hub_source
    if hub is not None and use_hub:
        from biasaudit.models import hub_reachable

        looked.append(f"hub:{hub.id}")
        if hub_reachable():
            return Located("hub", None, looked)
    where = ", ".join(looked) or "nowhere: no --data-dir, BIASAUDIT_DATA unset, no shared/data beside the checkout"
    hub_note = " and the hub is unreachable" if hub is not None and use_hub else ""
    raise DatasetNotFoundError(
        f"{decl.name}: neither its files ({', '.join(decl.files)}) nor a fetched copy in {where}{hub_note}; "
        f"to get it: {decl.fetch_hint()}"
    )


def load_rows(
    decl: DatasetDecl,
    source: str | Path | None,
    read_files: Callable[[Path], Iterable[SourceRow]],
    role: Role = "test",
) -> list[SourceRow]:
    """The rows of ``decl`` in the authors' schema, from ``source``: a folder (the dataset's own, or a
    data folder holding it), a hub id (the declared copy is mapped; another id must already carry the
    authors' fields), or None for the default data folder and then the hub."""
    hub = decl.hub_source
    if source is not None and is_hub_id(source):
        name, config, split = parse_hub_id(str(source))
        if hub is None or name != hub.id:
            return hub_rows(str(source))
        if config is not None:
            hub = replace(hub, config=config, configs=None)
        if split is not None:
            hub = replace(hub, splits={role: split})
        return hub.rows_from_hub(role)
    located = locate(decl, data_root(source) if source is None else Path(source), use_hub=source is None)
    if located.kind == "files":
        assert located.path is not None
        return list(read_files(located.path))
    assert hub is not None
    return hub.rows_from_folder(located.path, role) if located.kind == "fetched" else hub.rows_from_hub(role)  # type: ignore[arg-type]


def fetch(decl: DatasetDecl, to: Path, *, overwrite: bool = False) -> Path:
    """Download ``decl``'s hub copy (its declared configs and splits) into ``to/<folder>`` with
    ``save_to_disk``; audits read it back through the same mapping. Returns the folder written."""
    hub = decl.hub_source
    if hub is None:
        raise DatasetNotFoundError(f"{decl.name} has no usable hub copy; {decl.fetch_hint()}")
    target = to / decl.folder
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InvalidRequestError(f"{target} already exists and is not empty; remove it or pass --overwrite")
    from biasaudit.models import hub_reachable

    if not hub_reachable():
        raise DatasetNotFoundError(
            f"the Hugging Face hub is unreachable (or HF_HUB_OFFLINE is set), so {decl.name} ({hub.id}) cannot be "
            f"downloaded here: put the authors' files ({', '.join(decl.files)}; {decl.origin}) in "
            f"<folder>/{decl.folder}/ and pass --data-dir <folder>, or fetch where the hub is reachable"
        )
    if overwrite and target.exists():
        import shutil

        shutil.rmtree(target)
    loaded = hub.load()
    for config, dataset in loaded.items():
        dataset.save_to_disk(str(target / str(config) if hub.configs else target))
    # A fetched copy must read back: fail here, not in the middle of an audit.
    try:
        for role in hub.splits:
            hub.rows_from_folder(target, role)  # type: ignore[arg-type]
    except DatasetFormatError as exc:
        raise DatasetFormatError(f"the fetched copy of {decl.name} does not map onto the authors' fields: {exc}") from (
            exc
        )
    return target
