"""``biasaudit data list``: which datasets each suite reads, where biasaudit looked, and what is missing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from biasaudit.cli.common import console

data_app = typer.Typer(help="The public datasets the suites read.", no_args_is_help=True, add_completion=False)

# Where each dataset folder is described (its files, as their authors distribute them, and where to get them).
DOCS = {
    "fewshot_cls": "docs/calibration.md",
    "crows_pairs": "docs/metrics.md",
    "bbq": "docs/metrics.md",
    "stereoset": "docs/metrics.md",
    "winobias": "docs/metrics.md",
}


def data_root(data_dir: Path | None) -> tuple[Path | None, str]:
    """The data folder an audit would use, and why (--data-dir, $BIASAUDIT_DATA, beside the checkout, or none)."""
    from biasaudit.datasets import default_data_dir
    from biasaudit.errors import DatasetNotFoundError

    if data_dir is not None:
        return data_dir, "--data-dir"
    try:
        root = default_data_dir()
    except DatasetNotFoundError:
        return None, "none: --data-dir not given, BIASAUDIT_DATA unset, no shared/data beside the checkout"
    return root, "BIASAUDIT_DATA" if os.environ.get("BIASAUDIT_DATA") else "shared/data beside the checkout"


def missing_files(folder: str, root: Path) -> list[str]:
    """What a dataset folder lacks: for the ICL tasks each task's train and test file, else an empty folder."""
    if folder == "fewshot_cls":
        from biasaudit.calibration.evaluate import TASKS
        from biasaudit.calibration.tasks import load_task

        files = sorted({path for name in TASKS for path in (load_task(name).train, load_task(name).test)})
        return [f for f in files if not (root / f).is_file()]
    path = root / folder
    return [] if path.is_dir() and any(path.iterdir()) else [f"{folder}/"]


@data_app.command("list")
def list_data(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="The folder an audit would get.")] = None,
) -> None:
    """Per suite: the dataset folders it reads, whether they are there, and where to read how to get them."""
    from biasaudit.suite import builtin_suites

    root, why = data_root(data_dir)
    absent = " — it does not exist" if root is not None and not root.is_dir() else ""
    console.print(f"data folder: {escape(str(root)) if root else '—'} ({escape(why)}){absent}")
    table = Table(title="datasets per suite")
    for column in ("suite", "reads", "status", "to get it"):
        table.add_column(column)
    for suite in builtin_suites().values():
        if not suite.data:
            table.add_row(suite.name, "nothing external", "[green]ready[/green]", "")
            continue
        for folder in suite.data:
            missing = missing_files(folder, root) if root else [f"{folder}/"]
            status = "[green]found[/green]" if not missing else f"[red]missing[/red] {escape(', '.join(missing[:3]))}"
            hint = "" if not missing else f"the authors' files in <data folder>/{folder}/ ({DOCS.get(folder, 'docs')})"
            table.add_row(suite.name, f"{folder}/", status, hint)
    console.print(table)
