"""``sensitivity.html``: a sensitivity run (``biasaudit sensitivity``) as a self-contained page, and its table.

The same page rules as the audit report (inline CSS, figures as SVG data-URI images, no script, every
string escaped by jinja2). The table is built once here and shared by the page and ``sensitivity.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from biasaudit.report.plots import DosePanel, dose_plot
from biasaudit.report.render import environment
from biasaudit.report.sections import Figure, Section, Table, p_value

if TYPE_CHECKING:
    from biasaudit.sensitivity.analysis import DoseResponse
    from biasaudit.sensitivity.run import SensitivityResult

MAX_PANELS = 12  # dose-response panels drawn on the page (the table lists every effect)

COLUMNS = [
    "effect",
    "Spearman ρ with dose [95% CI]",
    "p",
    "ρ with |d − 0.5| [95% CI]",
    "p (|d − 0.5|)",
    "slope per dose unit [95% CI]",
    "min. detectable",
    "signal/noise",
]


def ranked(result: SensitivityResult) -> list[DoseResponse]:
    """Effects that move first, then by the larger |ρ|."""
    return sorted(
        result.responses,
        key=lambda r: (not r.moves, -max(abs(r.spearman), abs(r.strength_spearman)), r.metric),
    )


def rho_text(rho: float, ci: tuple[float, float] | None) -> str:
    """ρ with its CI, or with "(no CI below 10 adapters)"."""
    if ci is None:
        return f"{rho:+.2f} (no CI below 10 adapters)"
    return f"{rho:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def response_row(r: DoseResponse) -> list[str]:
    mdb = "—" if r.minimum_detectable is None else f"{r.minimum_detectable:g}"
    return [
        r.metric,
        rho_text(r.spearman, r.spearman_ci),
        p_value(r.spearman_p),
        rho_text(r.strength_spearman, r.strength_spearman_ci),
        p_value(r.strength_spearman_p),
        f"{r.slope:+.3g} [{r.slope_ci[0]:+.3g}, {r.slope_ci[1]:+.3g}]",
        mdb,
        f"{r.signal_to_noise:.2f}",
    ]


def sensitivity_table(result: SensitivityResult) -> Table:
    return Table("One row per effect the audit tested", COLUMNS, [response_row(r) for r in ranked(result)])


def summary(result: SensitivityResult) -> str:
    c = result.config
    lines = f"Doses {c.doses} × seeds {c.seeds}; suites {', '.join(c.audit_suites)}; limit {c.limit}."
    if result.training_seconds:
        seconds = list(result.training_seconds.values())
        lines += f" Training per adapter {min(seconds):.0f}–{max(seconds):.0f} s."
    return lines


def reading(r: DoseResponse) -> str:
    """One sentence on an effect that moves with the dose (or with its distance from the placebo)."""
    where = (
        "no dose leaves the placebo envelope"
        if r.minimum_detectable is None
        else f"separated from the placebo from |d − 0.5| = {r.minimum_detectable:g}"
    )
    if r.tracks_dose:
        return (
            f"{r.metric} moves with the dose: ρ = {rho_text(r.spearman, r.spearman_ci)} (p = {r.spearman_p:.3f}), "
            f"slope {r.slope:+.3g} per dose unit [{r.slope_ci[0]:+.3g}, {r.slope_ci[1]:+.3g}]; {where}."
        )
    return (
        f"{r.metric} moves with the planting's strength whichever side it takes: ρ with |d − 0.5| = "
        f"{rho_text(r.strength_spearman, r.strength_spearman_ci)} (p = {r.strength_spearman_p:.3f}); {where}."
    )


def dose_panels(result: SensitivityResult, limit: int = MAX_PANELS) -> list[DosePanel]:
    """The ``limit`` strongest effects' dose-responses as plot panels (placebo envelope included)."""
    from biasaudit.sensitivity.analysis import PLACEBO

    panels = []
    for r in ranked(result)[:limit]:
        pts = result.points[r.metric]
        placebo = [p for p in pts if p.dose == PLACEBO]
        envelope = (min(p.ci[0] for p in placebo), max(p.ci[1] for p in placebo)) if placebo else None
        panels.append(
            DosePanel(
                f"{r.metric}\nρ = {r.spearman:+.2f}, with |d − 0.5|: {r.strength_spearman:+.2f}",
                [(p.dose, p.estimate, p.ci) for p in pts],
                envelope,
            )
        )
    return panels


def sensitivity_section(result: SensitivityResult) -> Section:
    """Dose-response panels (strongest first) and the table of every effect."""
    panels = dose_panels(result)
    uri = dose_plot(panels)
    more = len(result.responses) - len(panels)
    caption = (
        "Each adapter's estimate and 95% CI against the planted dose (seeds side by side), seed means joined, "
        "the placebo adapters' envelope shaded" + (f"; {more} weaker effects are in the table only" if more else "")
    )
    figures = [Figure(caption, uri)] if uri else []
    skipped = "; ".join(f"{suite} skipped: {why}" for suite, why in sorted(result.skipped.items()))
    return Section(
        "sensitivity",
        "Dose-response per effect",
        summary(result),
        figures=figures,
        tables=[sensitivity_table(result)],
        note=skipped,
    )


def render_sensitivity_html(result: SensitivityResult) -> str:
    c = result.config
    tracking = [r for r in ranked(result) if r.moves]
    intro = [
        f"Planting {c.planting} on {c.backend.model}: one LoRA adapter per dose and seed, each planted model audited "
        "as a user's model is (--model_args peft=...). Dose d is the fraction of the planting corpus that takes "
        "the planted side; d = 0.5 is the placebo (the same fine-tuning, no net association).",
        summary(result),
        f"{len(tracking)} of {len(result.responses)} effects move with the dose d or with its distance |d − 0.5| "
        "from the placebo (Spearman ρ's 95% CI excludes 0; below 10 adapters, its permutation p < 0.05; each a "
        "95% statement on its own). "
        "Minimum detectable: the smallest |d − 0.5| whose seed-mean estimate leaves the placebo envelope. "
        "Signal/noise: |slope| over the mean half-width of the metric's own CIs.",
    ]
    return (
        environment()
        .get_template("page.html.j2")
        .render(
            title=f"Sensitivity: planting {c.planting} on {c.backend.model}",
            intro=intro,
            findings=[reading(r) for r in tracking],
            empty_findings="No effect's Spearman ρ with the dose has a 95% interval that excludes 0.",
            sections=[sensitivity_section(result)],
        )
    )
