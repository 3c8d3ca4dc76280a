"""``FairnessResult``: what ``GroupFairness`` measured, as JSON, findings and a Markdown section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from biasaudit.errors import ConfigError
from biasaudit.fairness.intervals import FAMILIES, GAPS, RATES, SCORES
from biasaudit.markdown import md_cell
from biasaudit.stats import Estimate
from biasaudit.suite import Finding, effect_from_estimate, excludes, fields_from_dict

# The value of each gap when every group is treated alike.
GAP_NULLS = {gap: 0.0 if gap.endswith("difference") else 1.0 for gap in GAPS}
LABELS = {
    "accuracy": "accuracy", "selection_rate": "selection rate", "tpr": "TPR", "fpr": "FPR",
    "mean_score": "mean score", "auc": "AUC",
    "demographic_parity_difference": "demographic-parity difference",
    "demographic_parity_ratio": "demographic-parity ratio",
    "equalized_odds_difference": "equalized-odds difference",
    "equalized_odds_ratio": "equalized-odds ratio",
}  # fmt: skip


def estimate_from_dict(data: Mapping[str, Any]) -> Estimate:
    """An ``Estimate`` read back from its ``to_dict()``."""
    ci = data.get("ci95")
    return Estimate(data.get("value"), (float(ci[0]), float(ci[1])) if ci else None, int(data["n"]), data.get("note"))


@dataclass(frozen=True)
class GroupMetrics:
    """One group's metrics (or all rows', with ``group == {}``): ``group`` maps each group column to its
    value, ``metrics`` the names in ``RATES`` (and ``SCORES`` with a score column) to estimates."""

    group: dict[str, str]
    count: int
    metrics: dict[str, Estimate]

    @property
    def name(self) -> str:
        return ", ".join(f"{column}={value}" for column, value in self.group.items()) or "all rows"

    def to_dict(self) -> dict[str, Any]:
        return {"group": dict(self.group), "count": self.count, **{m: e.to_dict() for m, e in self.metrics.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupMetrics:
        data = dict(data)
        group, count = data.pop("group", None), data.pop("count", None)
        unknown = sorted(set(data) - {*RATES, *SCORES})
        if group is None or count is None or unknown:
            raise ConfigError(f"a fairness group needs 'group' and 'count' and metrics of {[*RATES, *SCORES]}: "
                              f"got keys {sorted(data)}")  # fmt: skip
        return cls(
            {str(k): str(v) for k, v in group.items()}, int(count), {m: estimate_from_dict(e) for m, e in data.items()}
        )


def format_estimate(estimate: Estimate | None) -> str:
    """``value [low, high]`` to 3 decimals; ``value *`` without an interval; ``—`` without a value."""
    if estimate is None or estimate.value is None:
        return "—"
    if estimate.ci95 is None:
        return f"{estimate.value:.3f} *"
    return f"{estimate.value:.3f} [{estimate.ci95[0]:.3f}, {estimate.ci95[1]:.3f}]"


def _yes(estimate: Estimate, gap: str) -> str:
    """Mark a gap whose interval excludes its no-gap value (a finding, for the differences)."""
    return "yes" if excludes(estimate.ci95, GAP_NULLS[gap]) else ""


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(md_cell(cell) for cell in cells) + " |"


@dataclass
class FairnessResult:
    """Group fairness of one set of predictions: per group, overall, and fairlearn's four gaps.

    ``settings`` records how it was made (bootstrap replicates, seed, confidence, minimum group size).
    ``to_dict()`` is the JSON ``biasaudit fairness`` writes; ``from_dict`` reads it back.
    """

    suite: ClassVar[str] = "fairness"

    label: str
    pred: str
    groups: list[str]
    score: str | None
    n_rows: int
    by_group: list[GroupMetrics]
    overall: GroupMetrics
    gaps: dict[str, Estimate]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: estimates as ``Estimate.to_dict()``; ``findings`` are derived, and ignored on reading."""
        return {
            "label": self.label, "pred": self.pred, "groups": list(self.groups), "score": self.score,
            "n_rows": self.n_rows, "settings": dict(self.settings),
            "by_group": [group.to_dict() for group in self.by_group], "overall": self.overall.to_dict(),
            "gaps": {gap: e.to_dict() for gap, e in self.gaps.items()},
            "findings": [finding.to_dict() for finding in self.findings()],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairnessResult:
        """Read back ``to_dict()`` (a ``ConfigError`` naming unknown or missing keys)."""
        data = fields_from_dict(cls, {k: v for k, v in data.items() if k != "findings"}, cls.suite)
        unknown = sorted(set(data["gaps"]) - set(GAPS))
        if unknown:
            raise ConfigError(f"unknown fairness gap(s) {unknown}; known: {list(GAPS)}")
        return cls(**{
            **data, "groups": list(data["groups"]), "settings": dict(data["settings"]),
            "by_group": [GroupMetrics.from_dict(g) for g in data["by_group"]],
            "overall": GroupMetrics.from_dict(data["overall"]),
            "gaps": {gap: estimate_from_dict(e) for gap, e in data["gaps"].items()},
        })  # fmt: skip

    @property
    def _level(self) -> str:
        return f"{float(self.settings.get('confidence', 0.95)):.0%}"

    def headline(self) -> str:
        """One line: the two differences with their intervals."""
        parts = [f"{LABELS[gap]} {format_estimate(self.gaps.get(gap))}" for gap in GAPS if gap.endswith("difference")]
        return " · ".join([*parts, f"{len(self.by_group)} groups, {self.n_rows} rows"])

    def _reading(self, gap: str, value: float, ci95: tuple[float, float]) -> str:
        """One sentence: the gap, its interval, and the groups at the ends of the rate that sets it."""
        ends = []
        for metric in FAMILIES[gap.rsplit("_", 1)[0]]:
            rated = [(v, g.name) for g in self.by_group if (v := g.metrics[metric].value) is not None]
            if rated:
                high, low = max(rated), min(rated)
                ends.append((high[0] - low[0], metric, high, low))
        head = f"The {LABELS[gap]} is {value:.3f} ({self._level} CI {ci95[0]:.3f} to {ci95[1]:.3f})"
        if not ends:
            return head + "."
        _, metric, high, low = max(ends)
        return f"{head}: {LABELS[metric]} is {high[0]:.3f} for {high[1]} but {low[0]:.3f} for {low[1]}."

    def effects(self) -> list[Finding]:
        """Each between-group difference with an interval, against 0, significant or not (the ratios say
        the same on another scale, so they are not tested twice)."""
        out = []
        for gap in GAPS:
            if not gap.endswith("difference") or gap not in self.gaps:
                continue
            reading = lambda value, ci95, gap=gap: self._reading(gap, value, ci95)  # noqa: E731
            found = effect_from_estimate(self.suite, gap, self.gaps[gap].to_dict(), GAP_NULLS[gap], reading)
            out.extend([found] if found else [])
        return out

    def findings(self) -> list[Finding]:
        """The between-group differences whose interval excludes 0."""
        return [effect for effect in self.effects() if effect.significant]

    def notes(self) -> list[str]:
        """Why an estimate has no interval (or no value), one line each, naming the group and metric."""
        groups = [*self.by_group, self.overall]
        return [
            *(f"{LABELS[gap]}: {e.note}" for gap, e in self.gaps.items() if e.note),
            *(f"{g.name}, {LABELS[m]}: {e.note}" for g in groups for m, e in g.metrics.items() if e.note),
        ]

    def to_markdown(self) -> str:
        """A Markdown section: the per-group table, the gaps, the findings and the notes."""
        s = self.settings
        metrics = [m for m in (*RATES, *SCORES) if m in self.overall.metrics]
        lines = [
            f"## Group fairness: {md_cell(self.pred)} against {md_cell(self.label)} by "
            f"{' × '.join(md_cell(g) for g in self.groups)}",
            "",
            f"{self.n_rows} rows in {len(self.by_group)} groups. Values are fairlearn's; cells read "
            f"`value [{self._level} interval]`. Rates: Wilson intervals; gaps: a bootstrap over rows stratified "
            f"by group ({s.get('n_bootstrap')} replicates, seed {s.get('seed')}), simultaneous over pairs of "
            f"groups; mean score and AUC: percentile bootstrap. * = no interval (see Notes).",
            "",
            _row([*self.groups, "n", *(LABELS[m] for m in metrics)]),
            "|" + "---|" * len(self.groups) + "---:|" * (1 + len(metrics)),
        ]
        for g in [*self.by_group, self.overall]:
            keys = [g.group.get(c, "**all**" if i == 0 else "") for i, c in enumerate(self.groups)]
            lines.append(_row([*keys, str(g.count), *(format_estimate(g.metrics.get(m)) for m in metrics)]))
        lines += ["", "### Between groups", "", _row(["gap", "value", f"{self._level} interval", "no-gap value",
                                                      "excludes it"]), "|---|---:|---|---:|---|"]  # fmt: skip
        for gap, e in self.gaps.items():
            interval = f"[{e.ci95[0]:.3f}, {e.ci95[1]:.3f}]" if e.ci95 else "—"
            value = "—" if e.value is None else f"{e.value:.3f}"
            lines.append(_row([LABELS[gap], value, interval, f"{GAP_NULLS[gap]:g}", _yes(e, gap)]))
        if findings := self.findings():
            lines += ["", "### Findings", "", *(f"- {md_cell(f.reading)}" for f in findings)]
        if notes := self.notes():
            lines += ["", "### Notes", "", *(f"- {md_cell(note)}" for note in notes)]
        return "\n".join(lines) + "\n"
