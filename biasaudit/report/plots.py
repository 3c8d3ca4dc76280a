"""The report's figures: matplotlib drawings returned as ``data:image/svg+xml;base64`` URIs.

Two shapes cover every suite: ``interval_plot`` (one dot per group with its 95 % interval, a dashed
line at the no-bias value, one colour per series) and ``layer_plot`` (a score along the model's
layers). The SVG is deterministic -- fixed hash salt, no
date in its metadata, text kept as text -- so re-rendering a saved run gives byte-identical HTML, and
it is embedded as an image, where a string inside it (a dataset's group name) can never run as script.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

Interval = tuple[float, float] | None
COLOURS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d68910", "#566573")


@dataclass(frozen=True)
class Point:
    """One group's estimate (None: not estimable, drawn as nothing) and its 95 % interval (None: none)."""

    label: str
    value: float | None
    ci: Interval = None


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]


def _figure(height: float, width: float = 7.0):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "biasaudit", "svg.fonttype": "none", "font.size": 9})
    return plt.subplots(figsize=(width, height))


def _data_uri(fig) -> str:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "biasaudit"})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def interval_plot(
    series: Sequence[Series], *, null: float | None, xlabel: str, null_label: str = "no bias"
) -> str | None:
    """Horizontal dot-and-interval plot, one row per label, one colour per series; None when nothing to draw."""
    labels = list(dict.fromkeys(p.label for s in series for p in s.points))
    if not labels or all(p.value is None for s in series for p in s.points):
        return None
    fig, ax = _figure(0.8 + 0.28 * len(labels) * max(1, len(series)) ** 0.5)
    rows = {label: i for i, label in enumerate(reversed(labels))}
    offset = 0.5 / max(1, len(series))
    for k, item in enumerate(series):
        shift = (k - (len(series) - 1) / 2) * offset
        colour = COLOURS[k % len(COLOURS)]
        for point in item.points:
            if point.value is None:
                continue
            y = rows[point.label] + shift
            if point.ci is not None:
                ax.plot(point.ci, (y, y), color=colour, linewidth=1.6)
            ax.plot(point.value, y, "o", color=colour, markersize=4.5, label=item.name)
    if null is not None:
        ax.axvline(null, color="#555555", linestyle="--", linewidth=0.9, label=null_label)
    ax.set_yticks(range(len(labels)), list(reversed(labels)))
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    if len(series) > 1 or null is not None:
        ax.legend(unique.values(), unique.keys(), loc="best", fontsize=8, frameon=False)
    return _data_uri(fig)


def layer_plot(lines: Sequence[tuple[str, Sequence[int], Sequence[float]]], *, ylabel: str) -> str | None:
    """A score along the layers, one line per (name, layers, values), legend below the axes."""
    if not lines:
        return None
    fig, ax = _figure(3.0)
    for k, (name, layers, values) in enumerate(lines):
        ax.plot(layers, values, marker=".", color=COLOURS[k % len(COLOURS)], linewidth=1.2, label=name)
    ax.axhline(0.0, color="#555555", linestyle="--", linewidth=0.9)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.grid(color="#e5e5e5", linewidth=0.6)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.18), fontsize=8, frameon=False)
    return _data_uri(fig)


@dataclass(frozen=True)
class DosePanel:
    """One metric's dose-response: (dose, estimate, 95 % interval) per adapter, and the placebo
    adapters' envelope (the band a dose must leave to be told apart from fine-tuning noise)."""

    title: str
    points: Sequence[tuple[float, float, tuple[float, float]]]
    envelope: tuple[float, float] | None = None


def dose_figure(panels: Sequence[DosePanel], columns: int = 3):  # type: ignore[no-untyped-def]
    """Small multiples, one panel per metric: each adapter's estimate ± CI against the planted dose
    (seeds side by side), the seed means joined by a line, the placebo envelope shaded."""
    rows = math.ceil(len(panels) / columns)
    fig, _ = _figure(2.4 * rows, width=3.0 * min(columns, len(panels)))
    fig.clf()  # a grid of panels instead of the single axes
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(rows, min(columns, len(panels)), k + 1)
        doses = sorted({d for d, _, _ in panel.points})
        step = min((b - a for a, b in itertools.pairwise(doses)), default=1.0)
        seen: dict[float, int] = {}
        for dose, estimate, (low, high) in panel.points:
            x = dose + (seen.get(dose, 0) - 0.5) * step * 0.15
            seen[dose] = seen.get(dose, 0) + 1
            ax.plot((x, x), (low, high), color=COLOURS[0], linewidth=1.2)
            ax.plot(x, estimate, "o", color=COLOURS[0], markersize=3.5)
        means = [sum(e for d, e, _ in panel.points if d == dose) / seen[dose] for dose in doses]
        ax.plot(doses, means, color=COLOURS[1], linewidth=1.0)
        if panel.envelope is not None:
            ax.axhspan(*panel.envelope, color="#dddddd", zorder=0)
        ax.set_title(panel.title, fontsize=8)
        ax.set_xlabel("planted dose", fontsize=8)
        ax.set_xticks(doses)
        ax.tick_params(labelsize=7)
        ax.grid(color="#eeeeee", linewidth=0.5)
    fig.tight_layout()
    return fig


def dose_plot(panels: Sequence[DosePanel], columns: int = 3) -> str | None:
    """``dose_figure`` as an SVG data URI (None when there is nothing to draw)."""
    return _data_uri(dose_figure(panels, columns)) if panels else None
