"""Render a run as ``report.html`` (one self-contained page) and ``report.md`` (its Markdown twin).

The HTML has inline CSS and figures (SVG as data URIs), no script and no network access (its
Content-Security-Policy forbids both); jinja2's autoescaping escapes every string, and Markdown cells go
through ``md_cell``, so text a model generated or a dataset holds is shown, never run. Rendering is a
pure function of the run folder: the same run renders byte-identical pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biasaudit.jsonio import write_text_atomic
from biasaudit.markdown import md_cell
from biasaudit.report.run import Run, load_run
from biasaudit.report.sections import Section, Table, build_sections, ci, num, p_value
from biasaudit.suite import Finding

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
TOP_RISKS = 10  # findings listed in the model-card section


def p_text(p: float | None) -> str:
    """``p_value`` in a sentence: "p < 0.001", "p = 0.012" ("" without a p-value)."""
    if p is None:
        return ""
    text = p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _card(run: Run) -> list[tuple[str, str]]:
    model, config, env = run.model, run.document.get("config", {}), run.document.get("environment", {})
    backend = config.get("backend", {})
    rows = [
        ("model", str(model.get("name", "?"))),
        ("weights fingerprint", str(model.get("weights_fingerprint", "—"))),
        ("loaded as", f"{backend.get('backend', 'hf')} · {model.get('dtype', '?')} on {model.get('device', '?')}"),
        ("parameters", f"{model['n_parameters']:,}" if model.get("n_parameters") else "—"),
        ("model_args", ", ".join(f"{k}={v}" for k, v in (backend.get("model_args") or {}).items()) or "—"),
        ("suites run", ", ".join(n for n in run.results if n not in run.skipped()) or "none"),
        (
            "limit · seed · chat template",
            f"{config.get('limit')} · {config.get('seed')} · {config.get('apply_chat_template')}",
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in env.items() if k != "platform")),
    ]
    return rows


def _effect_view(f: Finding) -> dict[str, Any]:
    return {
        **f.to_dict(),
        "p_text": p_text(f.p_value),
        "estimate_text": num(f.estimate),
        "ci_text": ci(f.ci95),
        "null_text": num(f.null, 2),
    }


def environment() -> Any:
    """The jinja2 environment of every page: the package's templates, autoescaping always on."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("biasaudit.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        keep_trailing_newline=True,
    )


def render_html(run: Run, sections: list[Section] | None = None) -> str:
    """The report page (a string); ``sections`` when the caller already built them (``build_sections``)."""
    effects = run.effects()
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            model=run.model,
            document=run.document,
            card=_card(run),
            skipped=sorted(run.skipped().items()),
            findings=[_effect_view(f) for f in run.findings()],
            not_significant=[_effect_view(f) for f in effects if not f.significant],
            n_effects=len(effects),
            sections=build_sections(run) if sections is None else sections,
        )
    )


def md_table(table: Table) -> list[str]:
    lines = [f"**{md_cell(table.caption)}**", "", "| " + " | ".join(md_cell(c) for c in table.columns) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


def _md_section(section: Section) -> list[str]:
    lines = [f"## {md_cell(section.title)} (`{section.suite}`)", "", f"*{md_cell(section.headline)}*", ""]
    if section.intro:
        lines += [md_cell(section.intro), ""]
    for table in [*section.tables, *([section.examples] if section.examples else [])]:
        lines += md_table(table)
    if section.note:
        lines += [f"_{md_cell(section.note)}_", ""]
    return lines


def render_markdown(run: Run, sections: list[Section] | None = None) -> str:
    """The report's Markdown twin: header, findings, each suite's tables, and a model-card section."""
    findings, effects = run.findings(), run.effects()
    lines = [f"# Bias audit: {md_cell(run.model.get('name', '?'))}", ""]
    lines += ["| | |", "|---|---|", *(f"| {md_cell(k)} | {md_cell(v)} |" for k, v in _card(run)), ""]
    if run.skipped():
        lines += [
            "Skipped here: " + "; ".join(f"`{n}` ({md_cell(why)})" for n, why in sorted(run.skipped().items())),
            "",
        ]
    lines += ["## Findings", ""]
    if findings:
        lines += [
            f"Effects whose 95 % interval excludes the no-bias value, strongest first (no correction across the "
            f"{len(effects)} effects tested).",
            "",
        ]
        lines += [
            f"- **{f.suite}** `{f.effect}`: {md_cell(f.reading)}"
            + (f" ({p_text(f.p_value)})" if f.p_value is not None else "")
            for f in findings
        ]
    else:
        lines.append("No tested effect's 95 % interval excludes its no-bias value.")
    lines.append("")
    quiet = [f for f in effects if not f.significant]
    if quiet:
        lines += md_table(
            Table(
                "Tested without evidence of bias",
                ["suite", "effect", "estimate", "95% CI", "no-bias value"],
                [[f.suite, f.effect, num(f.estimate), ci(f.ci95), num(f.null, 2)] for f in quiet],
            )
        )
    for section in build_sections(run) if sections is None else sections:
        lines += _md_section(section)
    lines += model_card_section(run)
    return "\n".join(lines).rstrip() + "\n"


def model_card_section(run: Run) -> list[str]:
    """A "Bias, Risks and Limitations" section in the Hugging Face model-card style, ready to paste."""
    findings = run.findings()
    version = run.document.get("biasaudit_version", "?")
    lines = ["## Bias, Risks and Limitations", ""]
    ran = ", ".join(n for n in run.results if n not in run.skipped())
    lines.append(f"This model was audited with biasaudit {version} (suites: {ran}).")
    if findings:
        lines += ["", "Measured biases (95 % confidence intervals):", ""]
        lines += [f"- {md_cell(f.reading)}" for f in findings[:TOP_RISKS]]
        if len(findings) > TOP_RISKS:
            lines.append(f"- … and {len(findings) - TOP_RISKS} more effects (see the full report).")
    else:
        lines += ["", "No tested effect showed a bias whose 95 % interval excludes the no-bias value."]
    lines += [
        "",
        "Limits of these measurements: each interval is at the 95 % level on its own, so among many groups a "
        "few may show an effect by chance; the benchmarks are English and largely US-centric; a bias not "
        "probed here is not shown to be absent; and scores on the audited prompts may differ from the "
        "model's behaviour in deployment.",
        "",
    ]
    return lines


def write_report(folder: str | Path, run: Run | None = None) -> tuple[Path, Path]:
    """Render the run in ``folder`` (``run``, when the caller already loaded it) into ``folder/report.html`` and
    ``folder/report.md`` (nothing elsewhere). The sections, figures included, are built once for both."""
    folder = Path(folder)
    run = load_run(folder) if run is None else run
    sections = build_sections(run)
    html, markdown = folder / REPORT_HTML, folder / REPORT_MD
    write_text_atomic(html, render_html(run, sections))
    write_text_atomic(markdown, render_markdown(run, sections))
    return html, markdown
