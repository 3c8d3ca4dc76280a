"""Negative bias of the default model on knowledge-stratified yes/no sets (METHODS.md §4).

For each source -- NQ-Open (short-answer questions turned into "is this proposed answer correct?"
items), BoolQ and StrategyQA (native yes/no questions), all from ``../shared/data`` -- the model's
knowledge is probed (greedy + 5 samples at T=0.7), a balanced yes/no set is built per subset
(correct / incorrect / insufficient knowledge), and every prompt scenario is evaluated: plain, with
relevant context (BoolQ passages, StrategyQA facts), with an "I don't know" option, chain-of-thought,
negated question, swapped option order, True/False labels.

It prints, per source, the scenario x subset table (precision, recall, P−R, No-rate vs gold No-rate,
IDK rate, accuracy on answered items) and answers the paper's three questions (Song et al. 2025,
arXiv 2511.10881) as found on this model:

1. does "No" dominate the insufficient-knowledge subset (plain prompt: No-rate there vs the gold
   No-rate and vs the correct-knowledge subset)?
2. does the IDK option help (P−R gap with vs without it)?
3. does chain-of-thought hurt (P−R gap and parse failures with vs without it)?

Run from the repository root::

    python benchmarks/negative_bias.py              # NQ-Open 1000, BoolQ 1000, StrategyQA 229 + 1000
    python benchmarks/negative_bias.py --quick      # 100 questions per source, short CoT

Results are saved per source as they finish (``benchmarks/results/negative_bias.json``); a rerun skips
sources already there with the same settings (``--force`` recomputes). Without ``../shared/data`` it
prints "skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)
from rich.console import Console

from biasaudit.backend.hf import HFBackend
from biasaudit.cli_negbias import results_table
from biasaudit.jsonio import read_json, write_json_atomic
from biasaudit.negbias.audit import NegBiasAuditConfig, run_negbias

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "negative_bias.json"


def sources(data_dir: Path) -> dict[str, dict[str, list[str]]]:
    """{name: {"qa": [...], "yesno": [...]}}. StrategyQA reads its dev split (229) and its train split,
    each capped at ``--limit`` (the two are the authors' unofficial split of one labelled set)."""
    return {
        "nq_open": {"qa": [str(data_dir / "nq_open" / "NQ-open.dev_sub3000.jsonl")], "yesno": []},
        "boolq": {"qa": [], "yesno": [str(data_dir / "boolq" / "dev_sub3000.jsonl")]},
        "strategyqa": {
            "qa": [],
            "yesno": [str(data_dir / "strategyqa" / "dev.json"), str(data_dir / "strategyqa" / "train.json")],
        },
    }


def value(metrics: dict[str, Any], key: str) -> float | None:
    entry = metrics.get(key) if isinstance(metrics, dict) else None
    return entry.get("value") if isinstance(entry, dict) else None


def findings(result: dict[str, Any]) -> dict[str, Any]:
    """The paper's three questions, answered from one source's results."""
    results = result["results"]
    plain = results.get("plain", {})
    out: dict[str, Any] = {}
    insufficient, correct = plain.get("insufficient", {}), plain.get("correct", {})
    out["no_dominates_insufficient"] = {
        "no_rate_insufficient": value(insufficient, "no_rate"),
        "gold_no_rate_insufficient": value(insufficient, "gold_no_rate"),
        "no_rate_correct": value(correct, "no_rate"),
        "pr_gap_insufficient": value(insufficient, "pr_gap"),
        "pr_gap_correct": value(correct, "pr_gap"),
    }
    for scenario, key in (("idk", "idk_vs_plain"), ("cot", "cot_vs_plain")):
        if scenario in results:
            out[key] = {
                subset: {
                    "pr_gap_plain": value(plain.get(subset, {}), "pr_gap"),
                    f"pr_gap_{scenario}": value(results[scenario].get(subset, {}), "pr_gap"),
                    f"no_rate_{scenario}": value(results[scenario].get(subset, {}), "no_rate"),
                    "no_rate_plain": value(plain.get(subset, {}), "no_rate"),
                    "idk_rate": value(results[scenario].get(subset, {}), "idk_rate"),
                    "parse_failure_rate": value(results[scenario].get(subset, {}), "parse_failure_rate"),
                }
                for subset in ("correct", "incorrect", "insufficient", "all")
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 questions per source, 48 CoT tokens")
    parser.add_argument("--limit", type=int, default=1000, help="questions per source file")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="+", choices=["nq_open", "boolq", "strategyqa"], help="run these sources")
    parser.add_argument("--cot-tokens", type=int, default=128)
    parser.add_argument("--force", action="store_true", help="recompute sources already saved")
    args = parser.parse_args()
    console = Console()
    if not (args.data_dir / "nq_open").is_dir():
        console.print(f"skipped: {args.data_dir} has no nq_open/ (the shared datasets live beside the repo)")
        return 0
    limit, cot_tokens = (100, 48) if args.quick else (args.limit, args.cot_tokens)
    saved = (read_json(args.out) or {}) if not args.force else {}
    payload: dict[str, Any] = {
        "benchmark": "negative_bias",
        "command": "python benchmarks/negative_bias.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "sources": dict(saved.get("sources", {})),
    }
    backend = HFBackend.from_spec("default")
    payload["model"] = backend.name
    for name, inputs in sources(args.data_dir).items():
        if args.only and name not in args.only:
            continue
        config = NegBiasAuditConfig(qa=inputs["qa"], yesno=inputs["yesno"], limit=limit, cot_max_new_tokens=cot_tokens)
        previous = payload["sources"].get(name)
        if previous and previous.get("config") == config.to_dict():
            console.print(f"{name}: reusing the saved result (--force recomputes)")
            result = previous
        else:
            start = time.perf_counter()
            result = run_negbias(backend, config)
            result["seconds"] = time.perf_counter() - start
            result["config"] = config.to_dict()
            payload["sources"][name] = result
            write_json_atomic(args.out, payload)
        console.print(results_table(result["results"], title=f"{name}: negative bias of {backend.name}"))
        result["findings"] = findings(result)
        console.print(f"{name} set: {result['set']['subsets']}", highlight=False)
        console.print(f"{name} findings: {result['findings']}", highlight=False)
        console.print(f"{name}: {result.get('seconds', 0):.0f} s", highlight=False)
    write_json_atomic(args.out, payload)
    console.print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
