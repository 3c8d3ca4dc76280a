"""``biasaudit fairness``: group fairness of any classifier's saved predictions (no model is loaded)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from biasaudit.cli.common import console, fail
from biasaudit.errors import (
    BiasAuditError,
    DatasetFormatError,
    DatasetNotFoundError,
    InvalidRequestError,
    MissingDependencyError,
)
from biasaudit.fairness import FairnessResult, GroupFairness
from biasaudit.fairness.result import GAP_NULLS, LABELS, format_estimate
from biasaudit.stats import MIN_CI_ITEMS
from biasaudit.suite import excludes

_READERS = {".csv": "CSV", ".jsonl": "JSON lines", ".ndjson": "JSON lines", ".parquet": "Parquet"}


def read_predictions(path: Path) -> pd.DataFrame:
    """The rows of a CSV, JSON-lines or Parquet file (by its suffix), or a typed error naming the file."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such file")
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise DatasetFormatError(f"{path}: unknown format {path.suffix!r}; use one of {sorted(_READERS)}")
    try:
        if kind == "CSV":
            return pd.read_csv(path)
        if kind == "Parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True)
    except ImportError as exc:
        raise MissingDependencyError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow): {exc}") from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetFormatError(f"{path}: cannot be read as {kind}: {first_line}") from exc


def fairness_tables(result: FairnessResult) -> list[Table]:
    """Per-group rows (and all rows) of every metric, then the four gaps; * marks a missing interval."""
    metrics = list(result.overall.metrics)
    groups = Table(title=f"group fairness: {result.pred} vs {result.label} by {' × '.join(result.groups)}")
    for column in result.groups:
        groups.add_column(column)
    for column in ("n", *(LABELS[m] for m in metrics)):
        groups.add_column(column, justify="right")
    for g in [*result.by_group, result.overall]:
        keys = [g.group.get(c, "all" if i == 0 else "") for i, c in enumerate(result.groups)]
        groups.add_row(*keys, str(g.count), *(format_estimate(g.metrics.get(m)) for m in metrics))
    gaps = Table(title="between groups (fairlearn)")
    for column in ("gap", "value [95% CI]", "no-gap value", "CI excludes it"):
        gaps.add_column(column)
    for gap, estimate in result.gaps.items():
        gaps.add_row(
            LABELS[gap],
            format_estimate(estimate),
            f"{GAP_NULLS[gap]:g}",
            "yes" if excludes(estimate.ci95, GAP_NULLS[gap]) else "",
        )
    return [groups, gaps]


def fairness(
    preds: Annotated[Path, typer.Argument(help="Predictions: a .csv, .jsonl or .parquet file, one row per example.")],
    group: Annotated[
        list[str],
        typer.Option("--group", "-g", help="Sensitive-feature column; repeat it for intersectional groups."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; nothing is written outside it.")],
    label: Annotated[str, typer.Option("--label", help="Column of the true labels (0/1).")] = "label",
    pred: Annotated[str, typer.Option("--pred", help="Column of the predicted labels (0/1).")] = "pred",
    score: Annotated[
        str | None, typer.Option("--score", help="Optional column of scores (e.g. P(y=1)): mean score and AUC.")
    ] = None,
    n_bootstrap: Annotated[
        int, typer.Option("--n-bootstrap", min=2, help="Bootstrap replicates behind the intervals.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    min_group_size: Annotated[
        int, typer.Option("--min-group-size", min=2, help="Rows (positives, negatives) a group needs for an interval.")
    ] = MIN_CI_ITEMS,
) -> None:
    """Group fairness of a classifier's predictions: per-group accuracy, selection rate, TPR and FPR, and
    fairlearn's demographic-parity and equalized-odds gaps, each with a 95% interval (docs/fairness.md)."""
    from biasaudit.jsonio import write_json_atomic, write_text_atomic
    from biasaudit.report.fairness_page import render_fairness_html

    try:
        if out.exists() and not out.is_dir():
            raise InvalidRequestError(f"--out {out} is a file; name a folder (it is created if missing)")
        frame = read_predictions(preds)
        estimator = GroupFairness(n_bootstrap=n_bootstrap, seed=seed, min_group_size=min_group_size)
        result = estimator.fit(frame, label=label, pred=pred, groups=group, score=score).result_
    except BiasAuditError as exc:
        raise fail(exc) from exc
    result = dataclasses.replace(result, settings={**result.settings, "predictions": str(preds)})
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "fairness.json", result.to_dict())
    markdown, html = out / "fairness.md", out / "fairness.html"
    write_text_atomic(markdown, result.to_markdown())
    write_text_atomic(html, render_fairness_html(result))
    for table in fairness_tables(result):
        console.print(table)
    for finding in result.findings():
        console.print(f"finding: {escape(finding.reading)}", highlight=False)
    console.print(f"results: {os.path.abspath(out / 'fairness.json')} (+ {markdown.name}, {html.name})")
