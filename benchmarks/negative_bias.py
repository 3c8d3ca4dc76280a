"""Negative bias of the default model on knowledge-stratified yes/no sets (docs/methods.md §4).

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
sources already there with the same settings and procedure (``--force`` recomputes). What the model
said is saved beside them, one gzipped JSONL file per source
(``benchmarks/results/negative_bias_samples/<source>.jsonl.gz``): a line per probed question (greedy
and sampled answers, verdict, subset, items) and a line per prediction (chain-of-thought replies in
full). ``--rescore`` recomputes every metric from those files without the model (after a change to the
intervals or the answer parsing). Without ``../shared/data`` it prints "skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)
from rich.console import Console

from biasaudit.backend.hf import HFBackend
from biasaudit.cli.negbias import kind_table, results_table
from biasaudit.jsonio import read_json, write_json_atomic
from biasaudit.negbias.audit import NegBiasAuditConfig, run_negbias
from biasaudit.negbias.evaluate import ScenarioPrediction, score_predictions
from biasaudit.negbias.scenarios import load_scenarios

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "negative_bias.json"
# How the numbers are made, beyond the config: a saved source made another way is recomputed.
PROCEDURE = {
    "intervals": "Wilson over the effective number of items given the questions; MOVER for P-R, FNR-FPR",
    "cot_parser": "last answer statement; quoted format mentions and option listings skipped",
    "matching": "match / partial / mismatch verdict; correct needs match, model_wrong needs mismatch",
}


def samples_path(out: Path, source: str) -> Path:
    return out.parent / "negative_bias_samples" / f"{source}.jsonl.gz"


def write_samples(path: Path, samples: dict[str, list[dict[str, Any]]]) -> None:
    """One JSON line per question, then one per prediction (gzip; replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as handle:
        for kind in ("questions", "predictions"):
            for row in samples[kind]:
                handle.write(json.dumps({"type": kind[:-1], **row}, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_samples(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows ``write_samples`` wrote: {"questions": [...], "predictions": [...]}."""
    out: dict[str, list[dict[str, Any]]] = {"questions": [], "predictions": []}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            out[row.pop("type") + "s"].append(row)
    return out


def rescore(result: dict[str, Any], path: Path) -> None:
    """Recompute ``results`` and ``results_by_kind`` of one source from its saved predictions, the
    chain-of-thought answers re-parsed from the saved replies with the current parser (the samples file
    is rewritten with them). The model is not needed; the set (and so the matching) stays as saved."""
    samples = read_samples(path)
    predictions = [ScenarioPrediction(**row) for row in samples["predictions"]]
    config = result["evaluation_config"]
    scenarios = load_scenarios(config["scenario_file"])
    for i, p in enumerate(predictions):
        scenario = scenarios[p.scenario]
        if scenario.chain_of_thought:
            literal = scenario.parse(p.generation or "")
            predictions[i] = dataclasses.replace(p, literal=literal, answer=scenario.semantic(literal))
    for name in config["scenarios"]:
        rows = [p for p in predictions if p.scenario == name]
        result["results"][name], result["results_by_kind"][name] = score_predictions(rows)
    samples["predictions"] = [p.to_dict() for p in predictions]
    write_samples(path, samples)
    # Keys of settings that no longer exist (the intervals used to be a bootstrap with n_bootstrap
    # resamples) are dropped, so the saved config compares equal to today's.
    for key in ("config", "evaluation_config"):
        result[key].pop("n_bootstrap", None)
    result["procedure"] = PROCEDURE


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


def probe_verdicts(questions: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{subset: {greedy answer's verdict: questions}}: how the knowledge split came about."""
    out: dict[str, dict[str, int]] = {}
    for row in questions:
        probe = row["probe"]
        by_verdict = out.setdefault(probe["subset"], {})
        verdict = probe.get("verdict") or "none"
        by_verdict[verdict] = by_verdict.get(verdict, 0) + 1
    return out


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
    by_kind = result.get("results_by_kind", {})
    out["by_question_kind"] = {
        scenario: {
            subset: {
                kind: {
                    key: value(metrics, key) for key in ("no_rate", "pr_gap", "accuracy_answered", "parse_failure_rate")
                }
                | {"n_questions": metrics.get("n_questions")}
                for kind, metrics in kinds.items()
            }
            for subset, kinds in by_kind.get(scenario, {}).items()
        }
        for scenario in ("plain", "cot")
        if scenario in by_kind
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
    parser.add_argument("--rescore", action="store_true", help="recompute the metrics from the saved samples")
    args = parser.parse_args()
    console = Console()
    if args.rescore:
        payload = read_json(args.out) or {}
        for name, result in payload.get("sources", {}).items():
            path = samples_path(args.out, name)
            if args.only and name not in args.only:
                continue
            # Re-scoring redoes the intervals and the CoT parsing, not the set: its matching must be today's.
            if not path.is_file() or result.get("procedure", {}).get("matching") != PROCEDURE["matching"]:
                console.print(f"{name}: no samples saved with the current matching; run it first")
                continue
            rescore(result, path)
            result["findings"] = findings(result)
            result["rescored"] = True
            console.print(results_table(result["results"], title=f"{name}: negative bias (re-scored)"))
        write_json_atomic(args.out, payload)
        return 0
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
        if previous and previous.get("config") == config.to_dict() and previous.get("procedure") == PROCEDURE:
            console.print(f"{name}: reusing the saved result (--force recomputes)")
            result = previous
        else:
            start = time.perf_counter()
            result = run_negbias(backend, config, samples=True)
            result["seconds"] = time.perf_counter() - start
            result["config"] = config.to_dict()
            result["procedure"] = PROCEDURE
            samples = result.pop("samples")
            result["probe_verdicts"] = probe_verdicts(samples["questions"])
            write_samples(samples_path(args.out, name), samples)
            payload["sources"][name] = result
            write_json_atomic(args.out, payload)
        console.print(results_table(result["results"], title=f"{name}: negative bias of {backend.name}"))
        console.print(kind_table(result["results_by_kind"], title=f"{name}: by question kind"))
        result["findings"] = findings(result)
        console.print(f"{name} set: {result['set']['subsets']}", highlight=False)
        console.print(f"{name} findings: {result['findings']}", highlight=False)
        console.print(f"{name}: {result.get('seconds', 0):.0f} s", highlight=False)
    write_json_atomic(args.out, payload)
    console.print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
