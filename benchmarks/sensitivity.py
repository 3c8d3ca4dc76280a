"""Known-answer validation on the default model: plant each bias at several doses, audit, and report which
effects move with the dose (docs/sensitivity.md).

For each planting (``yes_prior``, ``label_prior``, ``gender``) it runs ``biasaudit.sensitivity.run_sensitivity``
into ``--work/<planting>/`` (adapters, about 10 MB each, and audits: outside the repository, resumable),
writes ``benchmarks/results/sensitivity_<planting>.json`` (every dose-response and reading, training time per
adapter, the command and load average), copies ``sensitivity.md`` / ``sensitivity.html`` beside it, draws
``sensitivity_<planting>.png`` (the effects with the strongest |rho|, estimate ± CI per adapter), and gathers
every planting's JSON into ``benchmarks/results/sensitivity.json`` (plantings may be run separately).

Run from the repository root (the label_prior and gender plantings need ``../shared/data``)::

    python benchmarks/sensitivity.py                                  # all three, the issue's design
    python benchmarks/sensitivity.py --plantings yes_prior --doses 0 0.5 1 --seeds 0 1 --n-sentences 256 --limit 40
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def plot(result: Any, path: Path, max_panels: int = 6) -> None:
    """The effects with the strongest |ρ|: estimate ± CI per adapter against the dose (the report's figure)."""
    from biasaudit.report.plots import dose_figure
    from biasaudit.report.sensitivity_page import dose_panels

    panels = dose_panels(result, max_panels)
    if panels:
        dose_figure(panels, columns=len(panels)).savefig(path, dpi=110)


def calibration_recovery(folder: Path, task: str = "sst2") -> dict[str, Any]:
    """For the label_prior planting: Macro-F1 on ``task`` per dose and method (none, CC, DC, BC), over every
    adapter and ICL seed of that dose (mean, min, max), from the planted models' ``icl`` results. The
    question (the issue's): do the calibrators bring a planted model's F1 back to the placebo's?"""
    runs: dict[str, dict[str, list[float]]] = {}
    for path in sorted((folder / "audits").glob("*/suites/icl.json")):
        dose = path.parts[-3].split("-")[0].removeprefix("d")
        result = json.loads(path.read_text())["result"]
        for condition in result["tasks"][task]["conditions"]:
            for method, scores in condition["methods"].items():
                runs.setdefault(dose, {}).setdefault(method, []).append(scores["macro_f1"])
    return {
        dose: {m: {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "n": len(v)} for m, v in methods.items()}
        for dose, methods in sorted(runs.items(), key=lambda kv: float(kv[0]))
    }


def recovery_table(recovery: dict[str, Any], task: str = "sst2") -> str:
    methods = ["none", "cc", "dc", "bc"]
    lines = [
        f"Macro-F1 on {task} per planted dose: mean [min, max] over adapters x ICL seeds",
        "",
        "| dose | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for dose, by_method in recovery.items():
        cells = [
            f"{by_method[m]['mean']:.3f} [{by_method[m]['min']:.3f}, {by_method[m]['max']:.3f}]"
            if m in by_method
            else "—"
            for m in methods
        ]
        lines.append(f"| {dose} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from biasaudit.backend.spec import BackendSpec
    from biasaudit.sensitivity.run import DEFAULT_DOSES, SensitivityConfig, run_sensitivity, summarise

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plantings", nargs="+", default=["yes_prior", "label_prior", "gender"])
    parser.add_argument("--doses", nargs="+", type=float, default=DEFAULT_DOSES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--n-sentences", type=int, default=512, help="planting corpus size per adapter")
    parser.add_argument("--limit", type=int, default=100, help="items per suite in each planted model's audit")
    parser.add_argument("--suites", nargs="+", default=[], help="suites to audit with (default: the planting's own)")
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="re-read the adapters and audits already in --work (no training, no auditing) and rewrite the results",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS / "sensitivity.json")
    parser.add_argument(
        "--work", type=Path, default=Path.home() / ".cache" / "biasaudit" / "sensitivity-bench", help="adapters, audits"
    )
    args = parser.parse_args(argv)

    for planting in args.plantings:
        config = SensitivityConfig(
            backend=BackendSpec(model="default", model_args={"dtype": "float32"}),
            planting=planting,
            doses=list(args.doses),
            seeds=list(args.seeds),
            suites=list(args.suites),
            limit=args.limit,
            data_dir=str(args.data_dir) if args.data_dir.is_dir() else None,
            training={"n_sentences": args.n_sentences},
        )
        folder = args.work / planting
        load_start = list(os.getloadavg())
        start = time.perf_counter()
        result = summarise(config, folder) if args.summarise_only else run_sensitivity(config, folder)
        seconds = time.perf_counter() - start
        record = {
            "command": "python benchmarks/sensitivity.py " + " ".join(sys.argv[1:]),
            "machine": machine_info(),
            "load_average_start": load_start,
            "load_average_end": list(os.getloadavg()),
            "seconds": seconds,
            "summarise_only": args.summarise_only,  # True: seconds is the re-read, not the training and audits
            **result.to_dict(),
        }
        extra = ""
        if planting == "label_prior":
            record["calibration_recovery"] = calibration_recovery(folder)
            extra = "\n" + recovery_table(record["calibration_recovery"])
        (RESULTS / f"sensitivity_{planting}.json").write_text(json.dumps(record, indent=2) + "\n")
        plot(result, RESULTS / f"sensitivity_{planting}.png")
        (RESULTS / f"sensitivity_{planting}.html").write_text((folder / "sensitivity.html").read_text())
        table = (folder / "sensitivity.md").read_text() + extra
        (RESULTS / f"sensitivity_{planting}.md").write_text(table)
        print(table)
        training = result.training_seconds.values()
        print(f"{planting}: {seconds / 60:.1f} min; training per adapter {min(training):.0f}-{max(training):.0f} s")
    # One file with every planting run so far (each may have its own command, e.g. a smaller --limit).
    combined = {
        path.stem.removeprefix("sensitivity_"): json.loads(path.read_text())
        for path in sorted(RESULTS.glob("sensitivity_*.json"))
    }
    args.out.write_text(json.dumps({"plantings": combined}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
