"""Known-answer validation on the default model: plant each bias at several doses, audit, and report which
effects move with the dose (docs/sensitivity.md).

For each planting (``yes_prior``, ``label_prior``, ``gender``) it runs ``biasaudit.sensitivity.run_sensitivity``
into ``--work/<planting>/`` (adapters, about 10 MB each, and audits: outside the repository, resumable),
copies each ``sensitivity.md`` to ``benchmarks/results/sensitivity_<planting>.md``, then writes
``benchmarks/results/sensitivity.json`` (every dose-response, training time per adapter, the load
average) and one plot per planting (``sensitivity_<planting>.png``: the effects with the strongest
|rho|, estimate ± CI per adapter).

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
    """Estimate ± CI per adapter against the dose, for the effects with the strongest |ρ|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = sorted(result.responses, key=lambda r: -abs(r.spearman))[:max_panels]
    if not ranked:
        return
    fig, axes = plt.subplots(1, len(ranked), figsize=(3.2 * len(ranked), 3.0), squeeze=False)
    for ax, response in zip(axes[0], ranked, strict=False):
        pts = result.points[response.metric]
        ax.errorbar(
            [p.dose for p in pts],
            [p.estimate for p in pts],
            yerr=[[p.estimate - p.ci[0] for p in pts], [p.ci[1] - p.estimate for p in pts]],
            fmt="o",
            capsize=3,
        )
        ax.set_title(f"{response.metric}\nρ={response.spearman:+.2f}", fontsize=8)
        ax.set_xlabel("dose")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from biasaudit.backend.spec import BackendSpec
    from biasaudit.sensitivity.run import DEFAULT_DOSES, SensitivityConfig, run_sensitivity

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plantings", nargs="+", default=["yes_prior", "label_prior", "gender"])
    parser.add_argument("--doses", nargs="+", type=float, default=DEFAULT_DOSES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--n-sentences", type=int, default=512, help="planting corpus size per adapter")
    parser.add_argument("--limit", type=int, default=100, help="items per suite in each planted model's audit")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS / "sensitivity.json")
    parser.add_argument(
        "--work", type=Path, default=Path.home() / ".cache" / "biasaudit" / "sensitivity-bench", help="adapters, audits"
    )
    args = parser.parse_args(argv)

    record: dict[str, Any] = {
        "command": "python benchmarks/sensitivity.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
    }
    record["load_average_start"] = list(os.getloadavg())
    record["plantings"] = {}
    for planting in args.plantings:
        config = SensitivityConfig(
            backend=BackendSpec(model="default", model_args={"dtype": "float32"}),
            planting=planting,
            doses=list(args.doses),
            seeds=list(args.seeds),
            limit=args.limit,
            data_dir=str(args.data_dir) if args.data_dir.is_dir() else None,
            training={"n_sentences": args.n_sentences},
        )
        folder = args.work / planting
        start = time.perf_counter()
        result = run_sensitivity(config, folder)
        seconds = time.perf_counter() - start
        training = {
            p.parent.name: json.loads(p.read_text())["seconds"]
            for p in sorted((folder / "adapters").glob("*/planting.json"))
        }
        record["plantings"][planting] = {**result.to_dict(), "seconds": seconds, "training_seconds": training}
        plot(result, RESULTS / f"sensitivity_{planting}.png")
        table = (folder / "sensitivity.md").read_text()
        (RESULTS / f"sensitivity_{planting}.md").write_text(table)
        print(table)
        print(
            f"{planting}: {seconds / 60:.1f} min; "
            f"training per adapter {min(training.values()):.0f}-{max(training.values()):.0f} s"
        )
    record["load_average_end"] = list(os.getloadavg())
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
