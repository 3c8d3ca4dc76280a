"""The simulation harness every reported interval and p-value is checked with.

Each check draws many seeded datasets with a known truth, runs the package's own procedure on each, and
returns how often a nominal 95% interval covers the truth (with its mean width, since coverage bought by
width is no gain), or how often p < alpha under a planted null (size) or a planted effect (power).

A helper module rather than a ``conftest.py`` (the root ``conftest`` would be shadowed); test modules in
this folder import it as ``from stats_harness import ...``.

Two environment variables turn the same tests into the figures quoted in docs/methods.md
(``python benchmarks/interval_calibration.py`` sets them):

* ``BIASAUDIT_SIM_SCALE`` -- multiply every check's number of datasets (default 1: fast enough for
  ``make test``);
* ``BIASAUDIT_STATS_REPORT`` -- a JSON-lines file each check appends its figures to.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

# What "checked" means (the acceptance rule): a nominal 95% interval covers the truth in at least
# 90% of simulated datasets; a test at alpha = 0.05 rejects a true null in at most 7% of them.
MIN_COVERAGE = 0.90
MAX_SIZE = 0.07
ALPHA = 0.05

Interval = tuple[float, float] | None


def n_datasets(default: int) -> int:
    """``default`` datasets, scaled by ``$BIASAUDIT_SIM_SCALE`` for the documented figures."""
    scale = float(os.environ.get("BIASAUDIT_SIM_SCALE", "1"))
    return max(1, round(default * scale))


def _rng(seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, i])


@dataclass(frozen=True)
class CoverageCheck:
    """How a nominal interval behaved over ``n`` simulated datasets with truth ``truth``."""

    name: str
    truth: float
    n: int
    coverage: float
    mean_width: float
    # Datasets where the procedure reported no interval (too few items, undefined); not counted as covered.
    n_missing: int
    # Mean of the point estimates, when the draw returns one (shows attenuation or bias next to coverage).
    mean_estimate: float | None = None

    @property
    def coverage_se(self) -> float:
        return math.sqrt(max(self.coverage * (1 - self.coverage), 1e-12) / self.n)


@dataclass(frozen=True)
class RejectionCheck:
    """How often p < alpha over ``n`` simulated datasets: the size under a null, the power under an effect."""

    name: str
    kind: str  # "size" or "power"
    alpha: float
    n: int
    rate: float
    effect: float
    median_p: float


def _report(record: CoverageCheck | RejectionCheck) -> None:
    path = os.environ.get("BIASAUDIT_STATS_REPORT")
    if not path:
        return
    row = {"check": type(record).__name__, **asdict(record)}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def interval_coverage(
    name: str,
    draw: Callable[[np.random.Generator], Interval | tuple[Interval, float]],
    truth: float,
    *,
    n: int,
    seed: int = 0,
) -> CoverageCheck:
    """Run ``draw(rng)`` on ``n`` seeded datasets; each returns the reported interval (or None), or
    ``(interval, estimate)``. Returns the share of intervals that contain ``truth`` and their mean width."""
    covered, widths, estimates, missing = 0, [], [], 0
    for i in range(n):
        out = draw(_rng(seed, i))
        interval: Interval
        if isinstance(out, tuple) and len(out) == 2 and (out[0] is None or isinstance(out[0], tuple)):
            interval, estimate = out  # type: ignore[misc]
            estimates.append(float(estimate))
        else:
            interval = out  # type: ignore[assignment]
        if interval is None:
            missing += 1
            continue
        low, high = interval
        covered += low <= truth <= high
        widths.append(high - low)
    record = CoverageCheck(
        name=name,
        truth=float(truth),
        n=n,
        coverage=covered / n,
        mean_width=float(np.mean(widths)) if widths else float("nan"),
        n_missing=missing,
        mean_estimate=float(np.mean(estimates)) if estimates else None,
    )
    _report(record)
    return record


def rejection_rate(
    name: str,
    draw_p: Callable[[np.random.Generator], float | None],
    *,
    n: int,
    kind: str = "size",
    effect: float = 0.0,
    alpha: float = ALPHA,
    seed: int = 0,
) -> RejectionCheck:
    """Share of ``n`` seeded datasets with ``draw_p(rng) < alpha`` (a None p-value counts as not rejected)."""
    if kind not in ("size", "power"):
        raise ValueError(f"kind must be 'size' or 'power', not {kind!r}")
    ps = [draw_p(_rng(seed, i)) for i in range(n)]
    values = np.array([1.0 if p is None else p for p in ps])
    record = RejectionCheck(
        name=name,
        kind=kind,
        alpha=alpha,
        n=n,
        rate=float(np.mean(values < alpha)),
        effect=float(effect),
        median_p=float(np.median(values)),
    )
    _report(record)
    return record
