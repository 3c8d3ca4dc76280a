"""SAE training end to end on the CPU: does a small TopK SAE reach the issue's target in ~15 minutes?

Target (from the issue): explained variance >= 0.75 on held-out tokens with <= 25% dead latents, within
about 15 CPU-minutes end to end (model load, activation extraction and training included).

What it runs: ``train_sae`` on the default model (SmolLM2-135M-Instruct, 30 layers, hidden 576) with a
corpus of public text from ``../shared/data``: BoolQ passages and questions, NQ-Open questions, SST-2
sentences, AG News descriptions, TREC questions and RTE premises, shuffled together. Held-out texts (10%)
give the metrics; see ``docs/sae.md`` for what each one means.

Run from the repository root::

    python benchmarks/bench_sae_train.py            # the full run (~15 min on 2 cores)
    python benchmarks/bench_sae_train.py --quick    # smoke run, a minute or two

It prints a table and writes ``benchmarks/results/sae_train.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "sae_train.json"
TARGET = {"explained_variance": 0.75, "dead_fraction": 0.25, "wall_time_s": 15 * 60}
# The configuration that meets the target on a 2-core CPU (see docs/sae.md for how it was chosen).
FULL = {
    "layer": 12,
    "d_sae": 2304,
    "k": 32,
    "extract_tokens": 100_000,
    "total_tokens": 600_000,
    "batch_size_tokens": 1024,
    "lr": 2e-3,
}
QUICK = {**FULL, "extract_tokens": 20_000, "total_tokens": 200_000, "checkpoint_every": 50}


def read_corpus(data_dir: Path) -> list[str]:
    """Public texts from the shared data folder (see the module docstring), shuffled with seed 0."""
    texts: list[str] = []
    boolq = data_dir / "boolq" / "dev_sub3000.jsonl"
    for line in boolq.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [row["passage"], row["question"].capitalize() + "?"]
    for line in (data_dir / "nq_open" / "NQ-open.dev_sub3000.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["question"].capitalize() + "?")
    for line in (data_dir / "fewshot_cls" / "sst2" / "stsa.binary.train").read_text(encoding="utf-8").splitlines():
        texts.append(line.partition(" ")[2])
    for line in (data_dir / "fewshot_cls" / "trec" / "train.txt").read_text(encoding="utf-8").splitlines():
        texts.append(line.partition(" ")[2])
    with (data_dir / "fewshot_cls" / "agnews" / "test_sub1000.csv").open(encoding="utf-8") as fh:
        texts += [f"{row['Title']}. {row['Description']}" for row in csv.DictReader(fh)]
    for line in (data_dir / "fewshot_cls" / "rte" / "train.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["premise"])
    texts = [t.strip() for t in texts if t.strip()]
    random.Random(0).shuffle(texts)
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--sae-dir", type=Path, default=None, help="keep the trained SAE here (default: a temp dir)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override config fields")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if not (args.data_dir / "boolq").is_dir():
        print(f"skipped: {args.data_dir} has no shared datasets (boolq, nq_open, fewshot_cls)", file=sys.stderr)
        return 0

    from rich.console import Console
    from rich.table import Table

    from biasaudit.backend.hf import HFBackend
    from biasaudit.concepts.sae_train import SAETrainingConfig, train_sae

    fields: dict[str, Any] = dict(QUICK if args.quick else FULL)
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key] = json.loads(value)
    machine = machine_info()
    start = time.perf_counter()
    backend = HFBackend.from_spec("default")
    load_s = time.perf_counter() - start
    texts = read_corpus(args.data_dir)
    config = SAETrainingConfig(**fields)
    with tempfile.TemporaryDirectory() as tmp:
        sae_dir = args.sae_dir or Path(tmp) / "sae"
        report = train_sae(backend, texts, config, sae_dir, resume=False)
    end_to_end = time.perf_counter() - start
    met = {
        "explained_variance": report.explained_variance >= TARGET["explained_variance"],
        "dead_fraction": report.dead_fraction <= TARGET["dead_fraction"],
        "wall_time_s": end_to_end <= TARGET["wall_time_s"],
    }
    table = Table(title=f"SAE training: {report.model_name}, layer {report.layer} ({report.hook_name})")
    for col in ("metric", "value", "target"):
        table.add_column(col)
    table.add_row("explained variance (held out)", f"{report.explained_variance:.3f}", ">= 0.75")
    table.add_row("dead latents (held out)", f"{report.dead_fraction:.1%}", "<= 25%")
    table.add_row("L0", f"{report.l0:.1f}", f"k = {report.k}")
    table.add_row("d_sae", str(report.d_sae), "")
    table.add_row("tokens extracted / held out", f"{report.n_train_tokens:,} / {report.n_eval_tokens:,}", "")
    table.add_row("massive-norm tokens dropped", f"{report.dropped_fraction:.4%}", "")
    table.add_row("tokens trained on (epochs)", f"{report.tokens_seen:,} ({report.epochs:.1f})", "")
    table.add_row(
        "model load / extraction / training",
        f"{load_s:.0f} / {report.extract_time_s:.0f} / {report.train_time_s:.0f} s",
        "",
    )
    table.add_row("end to end", f"{end_to_end / 60:.1f} min", "<= 15 min")
    Console().print(table)
    result = {
        "benchmark": "sae_train",
        "command": "python benchmarks/bench_sae_train.py" + (" --quick" if args.quick else ""),
        "machine": machine,
        "config": config.resolved(backend.hidden_size).to_dict(),
        "corpus": {"n_texts_available": len(texts), "sources": "boolq, nq_open, sst2, trec, agnews, rte"},
        "model_load_s": load_s,
        "end_to_end_s": end_to_end,
        "target": TARGET,
        "target_met": met,
        "report": report.to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
