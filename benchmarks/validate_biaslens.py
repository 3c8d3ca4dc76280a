"""Does BiasLens agree with test-set-based bias metrics? Spearman rho across bias categories.

For every BiasLens probe suite that names a matching category in CrowS-Pairs, BBQ or StereoSet
(``traditional:`` in ``probes/biaslens/*.yaml``), on the default model (SmolLM2-135M-Instruct, CPU):

* BiasLens category score: mean Bias(target; stereotyped group, other group) over the suite's probes,
  with its half-sample 95% CI (``biasaudit.biaslens.audit``); positive = stereotype-consistent.
* Traditional score of the same category, oriented the same way (positive = stereotype-consistent):
  CrowS-Pairs % stereotype preferred − 50; BBQ bias score in ambiguous contexts (s_AMB, ×100) and in
  disambiguated contexts (s_DIS, ×100); StereoSet SS − 50.
* Spearman rho between the BiasLens and each traditional score across the shared categories, with an
  exact permutation p-value, and a CI only from 10 categories (fewer give no interval that covers).
  The paper (Gao et al. 2025) reports rho > 0.85; with one small model and at most 8 categories, read
  the p-value, not the point estimate.

Run from the repository root::

    python benchmarks/validate_biaslens.py              # full: all 8 categories, all items
    python benchmarks/validate_biaslens.py --quick      # 3 categories, 60 examples, 200 items
    python benchmarks/validate_biaslens.py --rescore    # table and rho again from the saved JSON
    python benchmarks/validate_biaslens.py --parts biaslens   # rerun BiasLens, keep the other parts' runs

It prints the table and writes ``benchmarks/results/validate_biaslens.json``. Without
``../shared/data`` it says "skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)
from rich.console import Console
from rich.table import Table

from biasaudit.backend.hf import HFBackend
from biasaudit.biaslens.audit import BiasLensAudit, BiasLensConfig
from biasaudit.biaslens.probes import load_probe_suite, shipped_suites
from biasaudit.jsonio import write_json_atomic
from biasaudit.metrics import run_benchmark
from biasaudit.stats import MIN_PAIRS_FOR_RHO_CI, rank_correlation

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "validate_biaslens.json"


def traditional_scores(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{metric: {dataset category: {"value", "ci95", "n"}}}, oriented so that > 0 is stereotype-consistent."""

    def shifted(estimate: dict[str, Any], offset: float, scale: float) -> dict[str, Any]:
        value = estimate.get("value")
        ci = estimate.get("ci95")
        return {
            "value": None if value is None else scale * (value - offset),
            "ci95": None if not ci else [scale * (ci[0] - offset), scale * (ci[1] - offset)],
            "n": estimate.get("n"),
        }

    out: dict[str, dict[str, dict[str, Any]]] = {}
    crows = results.get("crows_pairs", {})
    if "by_bias_type" in crows:
        out["crows_pairs"] = {k: shifted(v["pct_stereotype"], 50.0, 1.0) for k, v in crows["by_bias_type"].items()}
    bbq = results.get("bbq", {})
    if "by_category" in bbq:
        out["bbq_ambig"] = {k: shifted(v["bias_ambig"], 0.0, 100.0) for k, v in bbq["by_category"].items()}
        out["bbq_disambig"] = {k: shifted(v["bias_disambig"], 0.0, 100.0) for k, v in bbq["by_category"].items()}
    stereo = results.get("stereoset", {})
    if "by_bias_type" in stereo:
        out["stereoset"] = {k: shifted(v["ss"], 50.0, 1.0) for k, v in stereo["by_bias_type"].items()}
    return out


PARTS = ("biaslens", "crows_pairs", "bbq", "stereoset")
METRIC_DATASET = {"crows_pairs": "crows_pairs", "bbq_ambig": "bbq", "bbq_disambig": "bbq", "stereoset": "stereoset"}


def correlate(x: list[float], y: list[float]) -> dict[str, Any]:
    """Spearman rho, its exact permutation p-value and, from 10 categories, a CI (``biasaudit.stats``).

    Below 10 categories no interval is reported: bootstrap and Fisher-z intervals covered a population
    rho of 0.89 in ~75% of simulated samples of 5 (tests/stats/test_rank_correlation_intervals.py)."""
    n = len(x)
    if n < 3:
        return {"n_categories": n, "rho": None, "p_value": None, "ci95": None, "note": "fewer than 3 shared categories"}
    out = rank_correlation(np.asarray(x), np.asarray(y))
    ci = [out["ci_low"], out["ci_high"]] if out["ci_low"] is not None else None
    result: dict[str, Any] = {"n_categories": n, "rho": out["rho"], "p_value": out["p_value"], "ci95": ci}
    if ci is None:
        result["note"] = f"no CI below {MIN_PAIRS_FOR_RHO_CI} categories; p is an exact permutation p-value"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 categories, 60 examples per concept, 200 items")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--limit", type=int, default=None, help="items per traditional benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-examples", type=int, default=200, help="examples per concept (and generic)")
    parser.add_argument("--model", default="default", help="model spec (default: the embedded SmolLM2-135M)")
    parser.add_argument("--rescore", action="store_true", help="recompute table and rho from --out (no model)")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"what to (re)run, comma-separated from {','.join(PARTS)}; the rest is kept from --out",
    )
    args = parser.parse_args()
    console = Console()
    if args.rescore:
        return rescore(args.out, console)
    if not (args.data_dir / "crows_pairs").is_dir():
        console.print(f"skipped: {args.data_dir} has no crows_pairs/ (the shared datasets live beside the repo)")
        return 0
    suites = [s for s in shipped_suites() if load_probe_suite(s).traditional]
    limit = args.limit
    n_examples = args.n_examples
    if args.quick:
        suites, limit, n_examples = ["gender", "religion", "disability"], limit or 200, 60
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown --parts {unknown}; choose from {PARTS}")
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else {}
    kept = [p for p in PARTS if p not in parts]
    missing = [p for p in kept if p not in earlier.get("runs", {})]
    if missing:
        parser.error(f"{args.out} has no earlier run of {missing} to keep; add them to --parts")
    backend = HFBackend.from_spec(args.model)
    command = "python benchmarks/validate_biaslens.py " + " ".join(sys.argv[1:])
    # Each part records how and when it ran, so a table assembled from several runs says so.
    runs = {p: earlier["runs"][p] for p in kept}
    timings = {p: earlier["timings_s"][p] for p in kept}
    raw: dict[str, dict[str, Any]] = {p: earlier["traditional_raw"][p] for p in kept if p != "biaslens"}
    lens = earlier.get("biaslens") if "biaslens" in kept else None
    for part in parts:
        start = time.perf_counter()
        if part == "biaslens":
            lens = BiasLensAudit(
                BiasLensConfig(suites=suites, n_examples=n_examples, n_generic=n_examples, seed=args.seed)
            ).run(backend).to_dict()  # fmt: skip
        else:
            raw[part] = run_benchmark(part, backend, limit=limit, seed=args.seed, source=args.data_dir / part)
        timings[part] = time.perf_counter() - start
        runs[part] = {"command": command, "finished": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info()}
    assert lens is not None
    payload = {
        "command": command,
        "runs": runs,
        "model": backend.name,
        "suites": suites,
        "traditional_raw": {p: raw[p] for p in PARTS if p in raw},
        "biaslens": lens,
        "timings_s": timings,
        "paper_claim": "Spearman rho > 0.85 against traditional metrics (Gao et al. 2025)",
    }
    payload.update(summarise(lens, raw, console))
    console.print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    write_json_atomic(args.out, payload)
    console.print(f"results: {args.out}")
    return 0


def rescore(path: Path, console: Console) -> int:
    """Recompute the table and correlations from a saved run (no model work)."""
    payload = json.loads(path.read_text())
    payload.update(summarise(payload["biaslens"], payload["traditional_raw"], console))
    write_json_atomic(path, payload)
    console.print(f"results: {path}")
    return 0


def summarise(lens: dict[str, Any], raw: dict[str, dict[str, Any]], console: Console) -> dict[str, Any]:
    """Rows (category, BiasLens, traditional scores), rho per metric, and the traditional metrics'
    agreement with each other (the ceiling any single score can reach against them); prints the table."""
    traditional = traditional_scores(raw)

    rows = []
    for category in lens["categories"]:
        row: dict[str, Any] = {"category": category["category"], "biaslens": category}
        for metric, dataset in METRIC_DATASET.items():
            key = category["traditional"].get(dataset)
            row[metric] = traditional.get(metric, {}).get(key) if key else None
        rows.append(row)

    correlations = {}
    for metric in METRIC_DATASET:
        pairs = [
            (r["biaslens"]["score"], r[metric]["value"])
            for r in rows
            if r["biaslens"]["score"] is not None and r[metric] is not None and r[metric]["value"] is not None
        ]
        correlations[metric] = correlate([p[0] for p in pairs], [p[1] for p in pairs])

    table = Table(title="BiasLens vs traditional bias metrics (default model; > 0 = stereotype-consistent)")
    for column in ("category", "BiasLens (95% CI)", "CrowS %stereo−50", "BBQ s_AMB×100", "BBQ s_DIS×100", "SS−50"):
        table.add_column(column)

    def fmt(entry: dict[str, Any] | None) -> str:
        if not entry or entry.get("value") is None:
            return "—"
        ci = entry.get("ci95")
        return f"{entry['value']:+.1f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")

    for r in rows:
        b = r["biaslens"]
        lens_cell = "—" if b["score"] is None else f"{b['score']:+.3f}"
        if b["ci"]:
            lens_cell += f" [{b['ci'][0]:+.3f}, {b['ci'][1]:+.3f}]"
        table.add_row(r["category"], lens_cell, *(fmt(r[m]) for m in METRIC_DATASET))
    console.print(table)
    for metric, corr in correlations.items():
        if corr["rho"] is None:
            console.print(f"{metric}: {corr['note']} ({corr['n_categories']})")
        else:
            console.print(f"Spearman rho vs {metric}: {_rho_text(corr)} over {corr['n_categories']} categories")

    agreement = {}
    metrics = list(METRIC_DATASET)
    for i, first in enumerate(metrics):
        for second in metrics[i + 1 :]:
            pairs = [
                (r[first]["value"], r[second]["value"])
                for r in rows
                if r[first] and r[second] and r[first]["value"] is not None and r[second]["value"] is not None
            ]
            if len(pairs) >= 3:
                agreement[f"{first} vs {second}"] = correlate([p[0] for p in pairs], [p[1] for p in pairs])
    for name, corr in agreement.items():
        console.print(f"traditional metrics agree, {name}: rho {_rho_text(corr)} over {corr['n_categories']}")
    return {"rows": rows, "correlations": correlations, "traditional_agreement": agreement}


def _rho_text(corr: dict[str, Any]) -> str:
    ci = corr["ci95"]
    interval = f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "(no CI)"
    return f"{corr['rho']:+.2f} {interval}, p {corr['p_value']:.2f}"


if __name__ == "__main__":
    sys.exit(main())
