"""``biasaudit compare``: two or more runs side by side (models, or one model before and after a mitigation).

For every effect tested in more than one run (``SuiteResult.effects()``, keyed by suite and effect), a
row with each run's estimate and 95 % interval, its difference from the first run, and whether the two
intervals overlap. Non-overlapping 95 % intervals imply a difference at well under the 5 % level;
overlapping ones do not show there is none (the intervals of two independent estimates can overlap
while their difference is significant), which the page says. Rendered, like the report, from the run
folders only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biasaudit.errors import InvalidRequestError
from biasaudit.jsonio import write_text_atomic
from biasaudit.markdown import md_cell
from biasaudit.report.plots import Point, Series, interval_plot
from biasaudit.report.render import environment
from biasaudit.report.run import Run, load_run
from biasaudit.report.sections import Figure, ci, num
from biasaudit.suite import Finding

COMPARE_HTML = "compare.html"
COMPARE_MD = "compare.md"


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass
class CompareRow:
    suite: str
    effect: str
    null: float
    per_run: list[Finding | None]

    @property
    def changed(self) -> bool:
        """Some run's interval does not overlap the reference's."""
        ref = self.per_run[0]
        return ref is not None and any(f is not None and not overlap(f.ci95, ref.ci95) for f in self.per_run[1:])

    def cells(self) -> list[str]:
        ref = self.per_run[0]
        cells = [self.effect, num(self.null, 2)]
        for k, f in enumerate(self.per_run):
            cells.append("—" if f is None else f"{num(f.estimate)} {ci(f.ci95)}")
            if k == 0:
                continue
            if f is None or ref is None:
                cells.append("—")
            else:
                cells.append(
                    f"{f.estimate - ref.estimate:+.3f} ({'overlap' if overlap(f.ci95, ref.ci95) else 'no overlap'})"
                )
        return cells


def labels(runs: Sequence[Run]) -> list[str]:
    """Short names for the runs: their folder names, made unique."""
    names = [run.folder.name or str(run.folder) for run in runs]
    return [name if names.count(name) == 1 else f"{name} ({k + 1})" for k, name in enumerate(names)]


def compare_rows(runs: Sequence[Run]) -> list[CompareRow]:
    keyed = [{(f.suite, f.effect): f for f in run.effects()} for run in runs]
    keys = list(dict.fromkeys(key for effects in keyed for key in effects))
    rows = []
    for suite, effect in keys:
        per_run = [effects.get((suite, effect)) for effects in keyed]
        present = [f for f in per_run if f is not None]
        if len(present) >= 2:
            rows.append(CompareRow(suite, effect, present[0].null, per_run))
    return rows


def _columns(names: Sequence[str]) -> list[str]:
    columns = ["effect", "no-bias value", f"{names[0]} (reference)"]
    for name in names[1:]:
        columns += [name, f"{name} − reference"]
    return columns


def _suite_figures(rows: Sequence[CompareRow], names: Sequence[str]) -> list[Figure]:
    figures = []
    for null in dict.fromkeys(row.null for row in rows):
        chosen = [row for row in rows if row.null == null]
        series = [
            Series(
                name,
                [
                    Point(row.effect, f.estimate if f else None, f.ci95 if f else None)
                    for row in chosen
                    for f in [row.per_run[k]]
                ],
            )
            for k, name in enumerate(names)
        ]
        uri = interval_plot(series, null=null, xlabel="estimate (95% CI)")
        if uri:
            figures.append(Figure(f"effects with no-bias value {null:g}", uri))
    return figures


def render_compare(runs: Sequence[Run]) -> tuple[str, str]:
    """The comparison page (HTML) and its Markdown twin."""
    if len(runs) < 2:
        raise InvalidRequestError("compare needs at least two run folders")
    names = labels(runs)
    rows = compare_rows(runs)
    by_suite: dict[str, list[CompareRow]] = {}
    for row in rows:
        by_suite.setdefault(row.suite, []).append(row)
    columns = _columns(names)
    suites: list[dict[str, Any]] = [
        {
            "name": suite,
            "figures": _suite_figures(suite_rows, names),
            "rows": [{"cells": r.cells(), "changed": r.changed} for r in suite_rows],
        }
        for suite, suite_rows in by_suite.items()
    ]
    run_rows = [
        {
            "label": name,
            "model": run.model.get("name", "?"),
            "fingerprint": run.model.get("weights_fingerprint", "—"),
            "created": run.document.get("created", "?"),
            "suites": ", ".join(run.results),
        }
        for name, run in zip(names, runs, strict=True)
    ]
    html = environment().get_template("compare.html.j2").render(runs=run_rows, suites=suites, columns=columns)
    lines = ["# Bias audit comparison", "", "| run | model | weights fingerprint | suites |", "|---|---|---|---|"]
    lines += [
        f"| {md_cell(r['label'])} | {md_cell(r['model'])} | {md_cell(r['fingerprint'])} | {md_cell(r['suites'])} |"
        for r in run_rows
    ]
    lines += [
        "",
        "Effects tested in more than one run; the first run is the reference. Non-overlapping 95 % intervals imply "
        "a difference; overlapping ones do not rule one out. **Bold**: some interval does not overlap the reference's.",
        "",
    ]
    for suite in suites:
        lines += [f"## {md_cell(suite['name'])}", "", "| " + " | ".join(md_cell(c) for c in columns) + " |"]
        lines.append("|" + "---|" * len(columns))
        for row in suite["rows"]:
            cells = [md_cell(c) for c in row["cells"]]
            if row["changed"]:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return html, "\n".join(lines).rstrip() + "\n"


def write_compare(folders: Sequence[str | Path], out: str | Path) -> tuple[Path, Path]:
    """Compare the runs in ``folders``; write ``out/compare.html`` and ``out/compare.md`` (nothing elsewhere)."""
    runs = [load_run(folder) for folder in folders]
    html, markdown = render_compare(runs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidRequestError(f"--out {out} is a file; name a folder (it is created if missing)")
    write_text_atomic(out / COMPARE_HTML, html)
    write_text_atomic(out / COMPARE_MD, markdown)
    return out / COMPARE_HTML, out / COMPARE_MD
