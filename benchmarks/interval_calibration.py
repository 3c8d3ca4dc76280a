"""Do the package's intervals and p-values mean what they say? The simulation harness, at scale.

Runs the simulation checks in ``tests/stats/`` (each draws many datasets with a known truth and runs the
package's own procedure on them) with ``BIASAUDIT_SIM_SCALE`` times the datasets ``make test`` uses,
collects every check's figures -- coverage and mean width of each nominal 95% interval, the rejection
rate of each test under a planted null (size) and a planted effect (power) -- prints them as a table and
writes ``benchmarks/results/interval_calibration.json``. docs/methods.md quotes these figures.

Run from the repository root::

    python benchmarks/interval_calibration.py             # scale 5 (about 30 min on 2 quiet cores)
    python benchmarks/interval_calibration.py --scale 1   # what make test runs
    python benchmarks/interval_calibration.py -k biaslens # one family (pytest -k expression)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)
from rich.console import Console
from rich.table import Table

from biasaudit.jsonio import write_json_atomic

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "interval_calibration.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=5.0, help="datasets per check, times make test's")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression: run only these checks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "checks.jsonl"
        env = {**os.environ, "BIASAUDIT_SIM_SCALE": str(args.scale), "BIASAUDIT_STATS_REPORT": str(report)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO_ROOT / "tests" / "stats")]
        if args.select:
            command += ["-k", args.select]
        start = time.perf_counter()
        status = subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode
        elapsed = time.perf_counter() - start
        checks = [json.loads(line) for line in report.read_text().splitlines()] if report.is_file() else []
    if not checks:
        console.print("no check reported figures (nothing selected?)")
        return 1
    table = Table(title=f"Simulation checks at scale {args.scale:g} (nominal 95% intervals, alpha 0.05)")
    for column in ("check", "datasets", "truth / effect", "coverage", "mean width", "size", "power"):
        table.add_column(column)
    for c in checks:
        if c["check"] == "CoverageCheck":
            cells = [f"{c['truth']:.3g}", f"{c['coverage']:.3f}", f"{c['mean_width']:.3g}", "", ""]
        else:
            rate = f"{c['rate']:.3f}"
            cells = [f"{c['effect']:.3g}", "", "", *((rate, "") if c["kind"] == "size" else ("", rate))]
        table.add_row(c["name"], str(c["n"]), *cells)
    console.print(table)
    payload = {
        "benchmark": "interval_calibration",
        "command": "python benchmarks/interval_calibration.py " + " ".join(sys.argv[1:]),
        "scale": args.scale,
        "pytest_status": status,
        "seconds": round(elapsed, 1),
        "machine": machine_info(),
        "checks": checks,
    }
    write_json_atomic(args.out, payload)
    console.print(f"pytest exit status {status}; {len(checks)} checks in {elapsed:.0f} s; results: {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
