"""What every ``biasaudit`` sub-command shares: the consoles, error exit, and option parsers."""

from __future__ import annotations

import re

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` (escaped: messages may quote model output or file contents) and exit with code 2."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    return typer.Exit(code=2)


def parse_batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter("use a positive integer or 'auto'") from None
    if size < 1:
        raise typer.BadParameter("use a positive integer or 'auto'")
    return size


def parse_layers(value: str, n_layers: int) -> list[int]:
    """``"all"``, ``"5,10,-1"`` or ranges ``"4-12"`` (inclusive) -> sorted layer numbers (negatives from the top)."""
    if value.strip() == "all":
        return list(range(1, n_layers + 1))
    layers: set[int] = set()
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if match is None:
            raise typer.BadParameter(f"{part!r} is not a layer, a range like 4-12, or 'all'")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        layers.update(range(lo, hi + 1))
    if not layers:
        raise typer.BadParameter("no layers given")
    return sorted(layer + (n_layers + 1 if layer < 0 else 0) for layer in layers)
