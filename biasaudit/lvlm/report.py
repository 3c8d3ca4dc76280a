"""The LVLM section of a fairness report: Markdown and self-contained HTML from an ``lvlm.json`` result.

The renderers only read the result dict (``LVLMEvaluator.to_dict`` plus run metadata); they never call a
model. Everything that came from a model (generated answers) is escaped: Jinja's autoescape in HTML, and
pipes/newlines/HTML specials in Markdown table cells.
"""

from __future__ import annotations

import html
from typing import Any

from jinja2 import Environment, select_autoescape

METHOD_NOTES = {
    "blind": "no image at all: the language prior alone",
    "none": "real image, label log-probs (no mitigation)",
    "posthoc": "post-hoc debias: p / (p_ref + ε) over the labels",
    "greedy": "real image, plain greedy generation",
    "sampling": "debiased decoding (1+α)·l − α·l_ref, greedy",
    "vcd": "debiased decoding with a noise image (VCD)",
}
_COLUMNS = ("n", "accuracy", "accuracy_ci", "accuracy_change", "f1", "yes_ratio", "yes_ratio_ci", "parse_failure_rate")


def format_change(change: dict[str, Any], *, with_peer: bool = True) -> str:
    """A paired accuracy change as "+0.050 [-0.01, 0.11] vs none" (without " vs none" if not ``with_peer``)."""
    low, high = change["ci"]
    return f"{change['delta']:+.3f} [{low:.2f}, {high:.2f}]" + (f" vs {change['vs']}" if with_peer else "")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict) and "delta" in value:
        return format_change(value)
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _md_cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def metric_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """One row per (method, split): the formatted columns of ``_COLUMNS``."""
    rows = []
    for method, by_split in result["results"].items():
        for split, metrics in by_split.items():
            row = {"method": method, "split": split}
            row.update({column: _fmt(metrics.get(column)) for column in _COLUMNS})
            rows.append(row)
    return rows


def render_markdown(result: dict[str, Any], *, examples: int = 5) -> str:
    """The LVLM section in Markdown: what was run, the metrics table, a few generated answers."""
    lines = [
        f"## Language prior of {_md_cell(str(result.get('model', '?')))} (LVLM)",
        "",
        f"Probe `{result.get('probe', '?')}`, {result.get('n_items', '?')} items, seed {result.get('seed', '?')}; "
        f"references {', '.join(result['config']['references'])}; post-hoc mode {result['config']['posthoc_mode']}.",
        "",
        "| method | split | " + " | ".join(_COLUMNS) + " |",
        "|---|---|" + "---|" * len(_COLUMNS),
    ]
    for row in metric_rows(result):
        lines.append("| " + " | ".join(_md_cell(row[c]) for c in ("method", "split", *_COLUMNS)) + " |")
    lines += ["", *(f"- `{m}`: {note}" for m, note in METHOD_NOTES.items() if m in result["results"])]
    lines += ["", _INTERVAL_NOTE]
    generated = [p for p in result.get("predictions", []) if any(k.endswith("_text") for k in p)][:examples]
    if generated:
        lines += ["", "Generated answers (first items):", ""]
        for pred in generated:
            texts = "; ".join(f"{k[:-5]}: {_md_cell(repr(v))}" for k, v in pred.items() if k.endswith("_text"))
            lines.append(f"- {_md_cell(pred['id'])} (gold {_md_cell(pred['answer'])}): {texts}")
    return "\n".join(lines) + "\n"


_INTERVAL_NOTE = (
    "Intervals are 95%: score intervals for accuracy and yes-ratio (yes/no items: from the gold-Yes and gold-No "
    "items, whose counts the probe fixes); `accuracy_change` is the mitigation's "
    "accuracy minus its plain peer's on the same items, with Newcombe's paired interval."
)

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LVLM language prior: {{ model }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
td:first-child,td:nth-child(2),th{text-align:left}code{background:#f4f4f4}
</style></head><body>
<h2>Language prior of {{ model }} (LVLM)</h2>
<p>Probe <code>{{ probe }}</code>, {{ n_items }} items, seed {{ seed }}; references {{ references }};
post-hoc mode {{ mode }}.</p>
<table><tr><th>method</th><th>split</th>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr><td>{{ row.method }}</td><td>{{ row.split }}</td>
{% for c in columns %}<td>{{ row[c] }}</td>{% endfor %}</tr>
{% endfor %}</table>
<ul>{% for m, note in notes %}<li><code>{{ m }}</code>: {{ note }}</li>{% endfor %}</ul>
<p>Intervals are 95%: score intervals for accuracy and yes-ratio (yes/no items: from the gold-Yes and gold-No
items, whose counts the probe fixes); <code>accuracy_change</code> is the
mitigation's accuracy minus its plain peer's on the same items, with Newcombe's paired interval.</p>
{% if generated %}<h3>Generated answers (first items)</h3><ul>
{% for p in generated %}<li>{{ p.id }} (gold {{ p.answer }}):
{% for k, v in p.texts %}<code>{{ k }}</code>: {{ v }}{% if not loop.last %}; {% endif %}{% endfor %}</li>
{% endfor %}</ul>{% endif %}
</body></html>
"""


def render_html(result: dict[str, Any], *, examples: int = 5) -> str:
    """The LVLM section as one self-contained HTML page (no external assets; model text autoescaped)."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    generated = [
        {"id": p["id"], "answer": p["answer"], "texts": [(k[:-5], v) for k, v in p.items() if k.endswith("_text")]}
        for p in result.get("predictions", [])
        if any(k.endswith("_text") for k in p)
    ][:examples]
    return env.from_string(_HTML).render(
        model=result.get("model", "?"),
        probe=result.get("probe", "?"),
        n_items=result.get("n_items", "?"),
        seed=result.get("seed", "?"),
        references=", ".join(result["config"]["references"]),
        mode=result["config"]["posthoc_mode"],
        columns=_COLUMNS,
        rows=metric_rows(result),
        notes=[(m, n) for m, n in METHOD_NOTES.items() if m in result["results"]],
        generated=generated,
    )
