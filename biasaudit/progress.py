"""Progress bars (rich) for anything that can take more than a few seconds.

Bars nest: a bar opened while another is showing becomes a second line of the same display
(rich allows one live display at a time), and disappears when its work is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Advance(Protocol):
    def __call__(self, n: int = 1) -> None: ...


# Calls with fewer items than this show no bar (the backends' rule of thumb; generation uses a quarter).
PROGRESS_MIN_ITEMS = 64

_active: Progress | None = None


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Advance]:
    """A rich bar with count, elapsed time and ETA; yields a function that advances it by ``n``.

    Disabled bars cost nothing, so callers need not branch.
    """
    global _active
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    if _active is not None:  # nested: a new line in the display that is already live
        outer = _active
        task = outer.add_task(description, total=total)
        try:
            yield lambda n=1: outer.advance(task, n)
        finally:
            outer.remove_task(task)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        _active = progress
        try:
            task = progress.add_task(description, total=total)
            yield lambda n=1: progress.advance(task, n)
        finally:
            _active = None
