"""``fairness.html``: the group-fairness result of ``biasaudit fairness`` as a self-contained page.

The same page rules as the audit report (inline CSS, figures as SVG data-URI images, no script, every
string escaped by jinja2): group names come from the user's data and are shown, never run.
"""

from __future__ import annotations

from biasaudit.fairness.intervals import GAPS, RATES, SCORES
from biasaudit.fairness.result import GAP_NULLS, LABELS, FairnessResult, format_estimate
from biasaudit.report.plots import Point, Series, interval_plot
from biasaudit.report.render import environment
from biasaudit.report.sections import Figure, Section, Table


def fairness_section(result: FairnessResult) -> Section:
    """Figures and tables of a fairness result (per-group rates with intervals, the four gaps)."""
    metrics = [m for m in (*RATES, *SCORES) if m in result.overall.metrics]
    rates = [
        Series(LABELS[m], [Point(g.name, g.metrics[m].value, g.metrics[m].ci95) for g in result.by_group])
        for m in ("selection_rate", "tpr", "fpr")
        if m in metrics
    ]
    uri = interval_plot(rates, null=None, xlabel="rate (95% CI)")
    figures = [Figure("Selection rate, TPR and FPR per group", uri)] if uri else []
    groups = Table(
        "Per group",
        [*result.groups, "n", *(LABELS[m] for m in metrics)],
        [
            [*(g.group.get(c, "all" if i == 0 else "") for i, c in enumerate(result.groups)), str(g.count),
             *(format_estimate(g.metrics.get(m)) for m in metrics)]
            for g in [*result.by_group, result.overall]
        ],
    )  # fmt: skip
    gaps = Table(
        "Between groups (fairlearn's definitions)",
        ["gap", "value [95% CI]", "no-gap value"],
        [
            [LABELS[gap], format_estimate(result.gaps.get(gap)), f"{GAP_NULLS[gap]:g}"]
            for gap in GAPS
            if gap in result.gaps
        ],
    )
    note = " ".join(result.notes())
    return Section("fairness", "Group fairness", result.headline(), figures=figures, tables=[groups, gaps], note=note)


def render_fairness_html(result: FairnessResult) -> str:
    title = f"Group fairness: {result.pred} against {result.label} by {' × '.join(result.groups)}"
    intro = [
        f"{result.n_rows} rows in {len(result.by_group)} groups; values are fairlearn's MetricFrame, intervals "
        "are 95 %: Wilson for rates, a bootstrap stratified by group (simultaneous over pairs) for gaps.",
        result.headline(),
    ]
    return (
        environment()
        .get_template("page.html.j2")
        .render(
            title=title,
            intro=intro,
            findings=[f.reading for f in result.findings()],
            sections=[fairness_section(result)],
        )
    )
