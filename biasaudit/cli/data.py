"""``biasaudit data list`` / ``data fetch``: the datasets each suite reads, where they were looked for, and
getting them (declarations: ``probes/datasets/*.yaml`` and the ``hub:`` blocks of ``probes/icl/*.yaml``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from biasaudit.cli.common import console, fail
from biasaudit.errors import BiasAuditError

data_app = typer.Typer(help="The public datasets the suites read.", no_args_is_help=True, add_completion=False)


def data_root(data_dir: Path | None) -> tuple[Path | None, str]:
    """The data folder an audit would use, and why (--data-dir, $BIASAUDIT_DATA, beside the checkout, or none)."""
    from biasaudit.data_sources import data_root as root_of

    if data_dir is not None:
        return data_dir, "--data-dir"
    root = root_of(None)
    if root is None:
        return None, "none: --data-dir not given, BIASAUDIT_DATA unset, no shared/data beside the checkout"
    return root, "BIASAUDIT_DATA" if os.environ.get("BIASAUDIT_DATA") else "shared/data beside the checkout"


@data_app.command("list")
def list_data(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="The folder an audit would get.")] = None,
) -> None:
    """Per suite: the datasets it reads, where they were looked for, found or not, and how to get them."""
    from biasaudit.data_sources import locate, suite_datasets
    from biasaudit.errors import DatasetNotFoundError
    from biasaudit.models import hub_reachable
    from biasaudit.suite import builtin_suites

    root, why = data_root(data_dir)
    absent = " — it does not exist" if root is not None and not root.is_dir() else ""
    online = hub_reachable()
    console.print(f"data folder: {escape(str(root)) if root else '—'} ({escape(why)}){absent}")
    console.print(f"hub: {'reachable' if online else 'unreachable (or HF_HUB_OFFLINE set)'}")
    table = Table(title="datasets per suite")
    for column in ("suite", "dataset", "status", "where", "to get it"):
        table.add_column(column, overflow="fold")
    for suite in builtin_suites().values():
        if not suite.data:
            table.add_row(suite.name, "nothing external", "[green]ready[/green]", "", "")
            continue
        for decl in suite_datasets(suite.data):
            try:
                found = locate(decl, root if root is not None and root.is_dir() else None, use_hub=online)
            except DatasetNotFoundError:
                looked = [str(root / decl.folder)] if root else []
                hub = decl.hub_source
                looked += [f"hub:{hub.id} (unreachable)"] if hub and not online else []
                hint = decl.fetch_hint(suite.name) + (f" (files: {', '.join(decl.files)})" if decl.hub else "")
                table.add_row(suite.name, decl.name, "[red]missing[/red]", escape(", ".join(looked)), escape(hint))
                continue
            status = {"files": "found: the authors' files", "fetched": "found: a fetched copy", "hub": "from the hub"}
            where = str(found.path) if found.path else f"hub:{decl.hub_source.id if decl.hub_source else ''}"
            table.add_row(suite.name, decl.name, f"[green]{status[found.kind]}[/green]", escape(where), "")
    console.print(table)


@data_app.command("fetch")
def fetch_data(
    suites: Annotated[list[str], typer.Argument(help="Suites whose datasets to get (see `biasaudit suites`).")],
    to: Annotated[Path, typer.Option("--to", help="The data folder to write; audits then read it with --data-dir.")],
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset folder that is already there.")] = False,
) -> None:
    """Download the suites' datasets from the hub through `datasets` into a data folder (one subfolder each).

    Needs the Hugging Face hub; where it is unreachable, put the authors' files in a folder yourself and
    pass it with --data-dir (`biasaudit data list` names each dataset's files and origin).
    """
    from biasaudit.data_sources import fetch, suite_datasets
    from biasaudit.suite import builtin_suites

    try:
        known = builtin_suites()
        unknown = [name for name in suites if name not in known]
        if unknown:
            raise BiasAuditError(f"unknown suite(s) {unknown}; available: {sorted(known)}")
        if to.exists() and not to.is_dir():
            raise BiasAuditError(f"--to {to} is a file; name a folder")
        decls = {decl.folder: decl for name in suites for decl in suite_datasets(known[name].data)}
        if not decls:
            console.print(f"{', '.join(suites)}: nothing to fetch (these suites read only what biasaudit ships)")
            return
        by_hand = [decl for decl in decls.values() if decl.hub is None]
        for decl in decls.values():
            if decl.hub is not None:
                folder = fetch(decl, to, overwrite=overwrite)
                console.print(f"{decl.name}: wrote {escape(str(folder))}")
    except BiasAuditError as exc:
        raise fail(exc) from exc
    for decl in by_hand:
        console.print(f"[yellow]{decl.name}[/yellow]: no hub copy is declared; {escape(decl.fetch_hint())}")
    console.print(f"audit with: biasaudit audit MODEL --data-dir {escape(str(to))}")
    if by_hand:
        raise typer.Exit(code=2)
