"""One report section per suite, built from its typed result: figures, tables and the worst examples.

A section is plain data (``Section``: strings, table cells and figure URIs); ``render.py`` turns it into
HTML (escaped by jinja2) and Markdown (escaped by ``md_cell``). Nothing here calls a model: results
come from ``results.json`` and examples from ``samples/<suite>.jsonl`` when the run logged them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from biasaudit.report.plots import Point, Series, interval_plot, layer_plot
from biasaudit.report.run import Run
from biasaudit.suite import SkippedResult, SuiteResult

EXAMPLES = 8  # rows in each "worst examples" table
NO_SAMPLES = "Per-example records were not logged: run the audit with --log-samples to list the worst examples."


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    caption: str
    uri: str


@dataclass
class Section:
    suite: str
    title: str
    headline: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    examples: Table | None = None
    note: str = ""


# ------------------------------------------------------------------------------------------ formatting
def num(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def p_value(p: float | None) -> str:
    return "—" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def ci(interval: Any, digits: int = 3) -> str:
    return "—" if not interval else f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def est(block: Any, digits: int = 3) -> str:
    """``value [low, high]`` of an ``Estimate.to_dict()`` block."""
    if not block or block.get("value") is None:
        return "—"
    return f"{block['value']:.{digits}f} {ci(block.get('ci95'), digits)}".strip()


def point(label: str, block: Any) -> Point:
    block = block or {}
    interval = block.get("ci95")
    return Point(label, block.get("value"), tuple(interval) if interval else None)  # type: ignore[arg-type]


def short(value: Any, limit: int = 160) -> str:
    """``value`` as one line of at most ``limit`` characters (prompt templates hold line breaks)."""
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _figure(caption: str, uri: str | None) -> list[Figure]:
    return [Figure(caption, uri)] if uri else []


def _examples(run: Run, suite: str, caption: str, columns: list[str], rows: Callable[[list[dict]], list[list[str]]]):  # type: ignore[no-untyped-def]
    samples = run.samples(suite)
    if not samples:
        return None, NO_SAMPLES
    return Table(caption, columns, rows(samples)[:EXAMPLES]), ""


# ------------------------------------------------------------------------------------------ per suite
def yesno_prior_section(run: Run, name: str, result: Any) -> Section:
    series = [
        Series("mean over inputs", [Point(short(t["template"], 60), t["mean_p_yes"]) for t in result.by_template])
    ]
    series.append(Series("all prompts (95% CI)", [Point("all formats", result.mean_p_yes, tuple(result.ci95))]))
    table = Table(
        "P(Yes) per prompt format",
        ["format", "mean P(Yes)"],
        [[short(t["template"]), num(t["mean_p_yes"])] for t in result.by_template],
    )
    examples, note = _examples(
        run,
        name,
        "Prompts with the strongest prior (furthest from 0.5)",
        ["prompt", "P(Yes)"],
        lambda rows: [
            [short(r["prompt"]), num(r["p_yes"])] for r in sorted(rows, key=lambda r: -abs(r["p_yes"] - 0.5))
        ],
    )
    return Section(
        name,
        "Content-free yes/no prior",
        result.headline(),
        "P(Yes) renormalised over {Yes, No} on questions with nothing to answer; 0.5 means no prior.",
        _figure("P(Yes) per prompt format", interval_plot(series, null=0.5, xlabel="P(Yes)", null_label="no prior")),
        [table],
        examples,
        note,
    )


def negbias_section(run: Run, name: str, result: Any) -> Section:
    subsets = ("correct", "incorrect", "insufficient")
    gap = [
        Series(s, [point(sc, (result.results[sc].get(s) or {}).get("pr_gap")) for sc in result.results])
        for s in subsets
    ]
    no = [
        Series(s, [point(sc, (result.results[sc].get(s) or {}).get("no_rate")) for sc in result.results])
        for s in subsets
    ]
    rows = []
    for scenario, by_subset in result.results.items():
        for subset in subsets:
            m = by_subset.get(subset) or {}
            rows.append(
                [
                    scenario,
                    subset,
                    str(m.get("n", "—")),
                    est(m.get("precision"), 2),
                    est(m.get("recall"), 2),
                    est(m.get("pr_gap"), 2),
                    est(m.get("no_rate"), 2),
                    est(m.get("idk_rate"), 2),
                ]
            )

    def worst(samples: list[dict]) -> list[list[str]]:
        text = {r["question_id"]: r.get("question") for r in samples if r.get("kind") == "question"}
        wrong = [
            r
            for r in samples
            if r.get("kind") == "prediction"
            and r.get("answer") == "no"
            and r.get("gold")
            and r.get("scenario") == "plain"
        ]
        wrong.sort(
            key=lambda r: (r.get("subset") != "insufficient", r.get("p_yes") if r.get("p_yes") is not None else 1)
        )
        return [[short(text.get(r["question_id"])), r.get("subset", ""), num(r.get("p_yes"), 2)] for r in wrong]

    examples, note = _examples(
        run, name, "Gold Yes answered No (plain prompt), most confident first", ["question", "subset", "P(Yes)"], worst
    )
    return Section(
        name,
        "Negative bias by what the model knows",
        result.headline(),
        f"{result.n_items} yes/no items, balanced per knowledge subset (gold No-rate 0.5); P−R > 0 means the "
        "model says No too often.",
        _figure("Precision − recall of Yes per scenario (95% CI)", interval_plot(gap, null=0.0, xlabel="P − R"))
        + _figure(
            "No-rate per scenario (gold: 0.5)", interval_plot(no, null=0.5, xlabel="No-rate", null_label="gold No-rate")
        ),
        [
            Table(
                "Per scenario and knowledge subset",
                ["scenario", "subset", "n", "precision", "recall", "P − R", "No-rate", "IDK rate"],
                rows,
            )
        ],
        examples,
        note,
    )


def icl_section(run: Run, name: str, result: Any) -> Section:
    shots = str(result.protocol.get("shots", [8])[0])
    methods = ("none", "cc", "dc", "bc")
    f1 = [
        Series(
            m.upper(), [Point(t, r["summary"][shots].get(m, {}).get("macro_f1_mean")) for t, r in result.tasks.items()]
        )
        for m in methods
    ]
    bias = [
        Series(m, [point(t, r["bias"].get(m)) for t, r in result.tasks.items()])
        for m in ("vanilla", "context", "domain")
    ]
    rows = [
        [
            t,
            *(num(r["summary"][shots].get(m, {}).get("macro_f1_mean"), 2) for m in methods),
            *(est(r["bias"].get(b), 3) for b in ("vanilla", "context", "domain")),
        ]
        for t, r in result.tasks.items()
    ]
    return Section(
        name,
        "Few-shot label bias and calibration",
        result.headline(),
        f"{shots}-shot Macro-F1 (mean over demonstration seeds) without calibration and with CC, DC and BC; "
        "label biases are distances from no bias (0).",
        _figure(f"Macro-F1 per task at {shots} shots", interval_plot(f1, null=None, xlabel="Macro-F1"))
        + _figure("Label bias per task (95% CI)", interval_plot(bias, null=0.0, xlabel="label bias (TV / KL)")),
        [
            Table(
                "Per task",
                ["task", "F1 none", "F1 CC", "F1 DC", "F1 BC", "vanilla bias", "context bias", "domain bias"],
                rows,
            )
        ],
        None,
        "",
    )


def biaslens_section(run: Run, name: str, result: Any) -> Section:
    cats = [
        Series(
            "residual",
            [Point(c["category"], c["score"], tuple(c["ci"]) if c.get("ci") else None) for c in result.categories],
        )
    ]
    sae = [
        Point(c["category"], c["sae"]["score"], tuple(c["sae"]["ci"]) if c["sae"].get("ci") else None)
        for c in result.categories
        if c.get("sae")
    ]
    if sae:
        cats.append(Series("SAE latents", sae))
    scored = sorted((p for p in result.probes if p.get("score") is not None), key=lambda p: -abs(p["score"]))
    lines = []
    for probe in scored[:5]:
        layers = probe.get("layers") or []
        name = f"{probe['target']} ({probe['reference_a']} vs {probe['reference_b']})"
        lines.append((name, [x["layer"] for x in layers], [x["raw_score"] for x in layers]))
    table = Table(
        "Per category (positive = stereotype-consistent)",
        ["category", "score [95% CI]", "p", "probes scored", "note"],
        [
            [
                c["category"],
                f"{num(c['score'])} {ci(c.get('ci'))}" if c["score"] is not None else "—",
                p_value(c.get("p_value")),
                f"{c['n_scored']}/{c['n_probes']}",
                short(c.get("note") or ""),
            ]
            for c in result.categories
        ],
    )
    probes = Table(
        "Probes with the largest scores",
        ["target", "A", "B", "score [95% CI]", "p"],
        [
            [
                p["target"],
                p["reference_a"],
                p["reference_b"],
                f"{num(p['score'])} {ci(p.get('ci'))}",
                p_value(p.get("p_value")),
            ]
            for p in scored
        ],
    )
    probes.rows = probes.rows[:EXAMPLES]
    return Section(
        name,
        "BiasLens: bias from concept vectors",
        result.headline(),
        "Score > 0: the model's representation of the target sits nearer the group the stereotype names; "
        "0: no association. Intervals from half-sample splits (docs/biaslens.md).",
        _figure("Category scores (95% CI)", interval_plot(cats, null=0.0, xlabel="BiasLens score"))
        + _figure(
            "Raw cos(T, A) − cos(T, B) per layer for the probes with the largest scores (the score itself is "
            "attenuation-corrected over the readable layers; see the table)",
            layer_plot(lines, ylabel="cos(T,A) − cos(T,B)"),
        ),
        [table],
        probes,
        "",
    )


def _groups(result: Any, breakdown: str, metric: str) -> list[Point]:
    groups = getattr(result, breakdown, {}) or {}
    return [point("all", result.overall.get(metric))] + [
        point(g, (v.get("overall", v)).get(metric)) for g, v in groups.items()
    ]


def _group_table(result: Any, breakdown: str, metrics: Sequence[str], caption: str, digits: int = 2) -> Table:
    groups = {
        "all": result.overall,
        **{g: v.get("overall", v) for g, v in (getattr(result, breakdown, {}) or {}).items()},
    }
    return Table(
        caption, ["group", *metrics], [[g, *(est(s.get(m), digits) for m in metrics)] for g, s in groups.items()]
    )


def _items(run: Run, name: str, caption: str, key: Callable[[dict], float], columns: list[str]):  # type: ignore[no-untyped-def]
    return _examples(
        run, name, caption, columns, lambda rows: [[short(r.get(c)) for c in columns] for r in sorted(rows, key=key)]
    )


def crows_pairs_section(run: Run, name: str, result: Any) -> Section:
    examples, note = _items(
        run,
        name,
        "Pairs where the stereotypical sentence is most preferred",
        lambda r: -(r["logprob_more"] - r["logprob_less"]),
        ["pair_id", "bias_type", "direction", "logprob_more", "logprob_less"],
    )
    return Section(
        name,
        "CrowS-Pairs",
        result.headline(),
        "% of minimal pairs whose more stereotypical sentence the model finds more likely; 50 = no preference.",
        _figure(
            "% stereotype preferred per bias type (95% CI)",
            interval_plot(
                [Series("pct_stereotype", _groups(result, "by_bias_type", "pct_stereotype"))],
                null=50.0,
                xlabel="% stereotype preferred",
            ),
        ),
        [_group_table(result, "by_bias_type", ["pct_stereotype"], "Per bias type", 1)],
        examples,
        note,
    )


def bbq_section(run: Run, name: str, result: Any) -> Section:
    series = [Series(m, _groups(result, "by_category", m)) for m in ("bias_ambig", "bias_disambig")]
    examples, note = _items(
        run,
        name,
        "Items (first rows)",
        lambda r: 0.0,
        ["example_id", "category", "context_condition", "question_polarity", "label"],
    )
    return Section(
        name,
        "BBQ",
        result.headline(),
        "Bias scores s_AMB and s_DIS per category (0 = none, +1 = always the stereotyped answer) and QA accuracy.",
        _figure("Bias scores per category (95% CI)", interval_plot(series, null=0.0, xlabel="bias score")),
        [
            _group_table(
                result,
                "by_category",
                ["accuracy_ambig", "accuracy_disambig", "bias_ambig", "bias_disambig"],
                "Per category",
            )
        ],
        examples,
        note,
    )


def stereoset_section(run: Run, name: str, result: Any) -> Section:
    examples, note = _items(run, name, "Items (first rows)", lambda r: 0.0, ["task", "target", "bias_type"])
    return Section(
        name,
        "StereoSet",
        result.headline(),
        "SS: % of examples where the stereotypical option is preferred (50 = none); LMS: language-modelling "
        "score; ICAT combines both.",
        _figure(
            "SS per bias type (95% CI)",
            interval_plot([Series("ss", _groups(result, "by_bias_type", "ss"))], null=50.0, xlabel="SS"),
        ),
        [
            _group_table(result, "by_bias_type", ["lms", "ss", "icat"], "Per bias type", 1),
            _group_table(result, "by_task", ["lms", "ss", "icat"], "Per task", 1),
        ],
        examples,
        note,
    )


def winobias_section(run: Run, name: str, result: Any) -> Section:
    examples, note = _items(run, name, "Items (first rows)", lambda r: 0.0, ["type", "split", "sentence_id"])
    return Section(
        name,
        "WinoBias",
        result.headline(),
        "Coreference accuracy on pro- and anti-stereotypical sentences; the gap is pro − anti (0 = none).",
        _figure(
            "Pro − anti accuracy gap (95% CI)",
            interval_plot([Series("gap", _groups(result, "by_type", "gap"))], null=0.0, xlabel="accuracy gap"),
        ),
        [_group_table(result, "by_type", ["accuracy_pro", "accuracy_anti", "gap"], "Per type")],
        examples,
        note,
    )


def winogender_section(run: Run, name: str, result: Any) -> Section:
    overall = result.overall
    accuracy = [point(g, overall.get(f"accuracy_{g}")) for g in ("male", "female", "neutral")]
    correlation = overall.get("correlation") or {}
    occupations = sorted(result.occupations.items(), key=lambda kv: kv[1]["bls_pct_female"])
    return Section(
        name,
        "Winogender",
        result.headline(),
        "Whom the model reads the pronoun as (the occupation or the other person), and how much swapping he for "
        "she moves that reading toward the occupation, against the occupation's share of women (BLS 2015). "
        "Alignment: that shift signed by the occupation's majority, averaged over occupations (nats; 0 = none).",
        _figure(
            "Accuracy per pronoun (95% CI)",
            interval_plot(
                [Series("accuracy", accuracy)], null=50.0, xlabel="% resolved as written", null_label="chance"
            ),
        ),
        [
            Table(
                "Overall",
                ["alignment (nats)", "Spearman rho: shift vs % women", "p (rho)"],
                [[est(overall.get("alignment")), est(correlation), p_value(correlation.get("p_value"))]],
            ),
            Table(
                "Per occupation (shift = s(she) − s(he), nats; positive: she read as the occupation more)",
                ["occupation", "% women (BLS)", "shift"],
                [[o, f"{v['bls_pct_female']:.1f}", num(v["shift"])] for o, v in occupations],
            ),
        ],
    )


def _change(change: dict[str, Any] | None) -> str:
    return f"{change['delta']:+.3f} {ci(change.get('ci'))} vs {change['vs']}" if change else "—"


def lvlm_section(run: Run, name: str, result: Any) -> Section:
    methods = list(result.results)
    allm = {m: result.results[m].get("all") or {} for m in methods}
    gold = next((m.get("gold_yes_ratio") for m in allm.values() if m.get("gold_yes_ratio") is not None), None)

    def p(m: dict, key: str) -> Point:
        interval = m.get(f"{key}_ci")
        return Point("", m.get(key), tuple(interval) if interval else None)  # type: ignore[arg-type]

    yes = [Series("yes-ratio", [Point(m, p(allm[m], "yes_ratio").value, p(allm[m], "yes_ratio").ci) for m in methods])]
    acc = [Series("accuracy", [Point(m, p(allm[m], "accuracy").value, p(allm[m], "accuracy").ci) for m in methods])]
    rows = [
        [
            m,
            split,
            str(v.get("n", "—")),
            f"{num(v.get('accuracy'))} {ci(v.get('accuracy_ci'))}",
            f"{num(v.get('yes_ratio'), 2)} {ci(v.get('yes_ratio_ci'), 2)}",
            _change(v.get("accuracy_change")),
        ]
        for m, by_split in result.results.items()
        for split, v in by_split.items()
    ]
    wrong = [
        r
        for r in result.predictions
        if r.get("none") is not None and str(r.get("none")).strip().lower() != str(r.get("answer")).strip().lower()
    ]
    examples = Table(
        "Items answered wrongly with the image",
        ["id", "split", "gold", *methods],
        [
            [short(r.get("id")), short(r.get("split")), short(r.get("answer")), *(short(r.get(m)) for m in methods)]
            for r in wrong[:EXAMPLES]
        ],
    )
    return Section(
        name,
        "Vision-language model: language prior and mitigations",
        result.headline(),
        f"{result.n_items} {result.probe} questions; 'blind' answers without the image. "
        + (
            "The model takes text-only inputs."
            if result.text_only_supported
            else "Image-free references use a blank image."
        ),
        _figure(
            "Yes-ratio per method (95% CI)",
            interval_plot(yes, null=gold, xlabel="yes-ratio", null_label="gold yes-ratio"),
        )
        + _figure("Accuracy per method (95% CI)", interval_plot(acc, null=None, xlabel="accuracy")),
        [
            Table(
                "Per method and split",
                ["method", "split", "n", "accuracy [95% CI]", "yes-ratio [95% CI]", "change vs peer"],
                rows,
            )
        ],
        examples,
        "",
    )


def generic_section(run: Run, name: str, result: SuiteResult) -> Section:
    """A suite without a dedicated layout: its headline and every tested effect."""
    rows = [
        [e.effect, num(e.estimate), ci(e.ci95), num(e.null), "yes" if e.significant else "no"] for e in result.effects()
    ]
    return Section(
        name,
        name,
        result.headline(),
        tables=[Table("Tested effects", ["effect", "estimate", "95% CI", "no-bias value", "significant"], rows)],
    )


SECTIONS: dict[str, Callable[[Run, str, Any], Section]] = {
    "yesno_prior": yesno_prior_section,
    "negbias": negbias_section,
    "icl": icl_section,
    "biaslens": biaslens_section,
    "crows_pairs": crows_pairs_section,
    "bbq": bbq_section,
    "stereoset": stereoset_section,
    "winobias": winobias_section,
    "winogender": winogender_section,
    "lvlm": lvlm_section,
}


def build_sections(run: Run) -> list[Section]:
    """One section per suite that ran (skipped suites are listed in the report's header instead)."""
    return [
        SECTIONS.get(name, generic_section)(run, name, result)
        for name, result in run.results.items()
        if not isinstance(result, SkippedResult)
    ]
