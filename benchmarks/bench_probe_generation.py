"""Knowledge-probing speed: a greedy answer and k = 5 samples per question, before and after the speed-ups.

What it measures, on the default model (SmolLM2-135M-Instruct, fp32, CPU), in one process, on the same
questions (NQ-Open from ``../shared/data/nq_open`` when present, else the shipped fact set): the wall time
of ``KnowledgeProber.probe_qa`` at six stages, each adding one change to the one before.

* **old** -- the prober as it was (``LegacyKnowledgeProber`` below): each prompt repeated k times, one
  row per sample, and the samples not stopped at the end of their line (they ran all
  ``max_new_tokens``); ``backend.prefix_reuse`` off, so generation runs as it did.
* **stop** -- samples stop at the newline, like the greedy answer (the prober now); still k rows per
  prompt, each encoding the whole prompt (``prefix_reuse`` off).
* **prompt** -- ``generate(..., num_return_sequences=k)`` with KV sharing: each prompt is encoded once
  and its cache repeated k times (header sharing kept off with an unreachable ``min_reuse_saving``).
* **header** -- also the few-shot header encoded once per call.
* **compact** -- rows that have finished leave their batch every few tokens (``hf_generation._COMPACT_EVERY``),
  so a batch of short answers no longer runs as long as its longest one.
* **batch** -- generation batches under the larger CPU budget (``hf_generation.AUTO_GENERATE_BUDGET``): the
  backend's defaults, i.e. what ``KnowledgeProber`` on ``HFBackend`` does now.

Stages before "compact" turn compaction off (``hf_generation._COMPACT_EVERY`` set past ``max_new_tokens``), and
stages before "batch" plan generation with the scoring budget (``backend.generation_planner``), so
"old" runs generation as it was.

Per stage: seconds (greedy and sampled calls apart), seconds per question, speed-up over old; and
whether results agree with old: greedy answers (the maths is the same, so they should be identical) and
subsets (samples draw their random numbers in another order once batches end earlier or hold other
rows, so some questions may land in another subset; the counts per subset show whether anything moved
systematically). "stop effect" replays the old run's samples: how many answers the newline stop alone
changes (a sample that starts with a line break is empty when stopped, while ``first_line`` of the
unstopped text skipped to the next line).

Run from the repository root::

    python benchmarks/bench_probe_generation.py             # 32 questions, about 5 minutes on 2 CPU cores
    python benchmarks/bench_probe_generation.py --n 8       # smoke run

It prints a table and writes ``benchmarks/results/probe_generation.json``. Timings are wall-clock on
whatever else the machine is running at the time (the load average is recorded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)
from rich.console import Console
from rich.table import Table

from biasaudit.backend import hf_generation
from biasaudit.backend.batching import AUTO_BUDGET, BatchPlanner
from biasaudit.backend.hf import DEFAULT_MIN_REUSE_SAVING, HFBackend, cut_at_stops
from biasaudit.jsonio import write_json_atomic
from biasaudit.negbias.items import KnowledgeProbe, QAItem
from biasaudit.negbias.knowledge import ANSWER_STOP, KnowledgeProber, first_line
from biasaudit.negbias.sources import load_qa, shipped_facts

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "nq_open" / "NQ-open.dev_sub3000.jsonl"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "probe_generation.json"
NO_HEADER_SHARING = 10**12
NO_COMPACTION = 10**6
OLD_BUDGET = AUTO_BUDGET["cpu"]
NEW_BUDGET = hf_generation.AUTO_GENERATE_BUDGET["cpu"]
COMPACT_EVERY = hf_generation._COMPACT_EVERY


@dataclass(frozen=True)
class Stage:
    """One configuration of prober and backend (see the module docstring)."""

    name: str
    description: str
    legacy: bool = False
    prefix_reuse: bool = True
    min_reuse_saving: int = DEFAULT_MIN_REUSE_SAVING
    compact_every: int = hf_generation._COMPACT_EVERY
    generation_budget: int = NEW_BUDGET
    seed_offset: int = 0


# Generation as it was: no KV sharing, no compaction, the scoring budget.
AS_BEFORE = Stage("", "", prefix_reuse=False, compact_every=NO_COMPACTION, generation_budget=OLD_BUDGET)
STAGES = [
    replace(AS_BEFORE, name="old", description="as it was", legacy=True),
    replace(AS_BEFORE, name="stop", description="+ samples stop at newline"),
    replace(AS_BEFORE, name="prompt", description="+ 1 prefill per prompt, KV x k", prefix_reuse=True,
            min_reuse_saving=NO_HEADER_SHARING),
    replace(AS_BEFORE, name="header", description="+ header encoded once", prefix_reuse=True),
    Stage("compact", "+ finished rows leave", generation_budget=OLD_BUDGET),
    Stage("batch", "+ larger decode batches (now)"),
    # Not a speed-up: the old method with the next seed, to show how many subsets sampling alone moves.
    replace(AS_BEFORE, name="old-seed+1", description="old, another sampling seed", legacy=True, seed_offset=1),
]  # fmt: skip


class LegacyKnowledgeProber(KnowledgeProber):
    """``_generate_chunk`` as it was before ``num_return_sequences`` (commit 74e71ac), without the retry."""

    def _generate_chunk(
        self, backend: Any, prompts: list[str], seed: int, max_new_tokens: int
    ) -> tuple[list[tuple[str, list[str]]] | None, str | None]:
        greedy = backend.generate(prompts, max_new_tokens=max_new_tokens, stop=ANSWER_STOP)
        repeated = [p for p in prompts for _ in range(self.k)]
        sampled = backend.generate(
            repeated, max_new_tokens=self.max_new_tokens, do_sample=True, temperature=self.temperature, seed=seed
        )
        return [
            (first_line(greedy[i]), [first_line(s) for s in sampled[i * self.k : (i + 1) * self.k]])
            for i in range(len(prompts))
        ], None


class TimedBackend:
    """Passes ``generate`` to ``backend``, adding up seconds per call kind and keeping the sampled texts."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        self.seconds = {"greedy": 0.0, "sampled": 0.0}
        self.sampled_texts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, prompts: Sequence[str], **kwargs: Any) -> list[str]:
        kind = "sampled" if kwargs.get("do_sample") else "greedy"
        start = time.perf_counter()
        out = self.backend.generate(prompts, **kwargs)
        self.seconds[kind] += time.perf_counter() - start
        if kind == "sampled":
            self.sampled_texts.extend(out)
        return out


def run_stage(
    backend: HFBackend, items: list[QAItem], stage: Stage, seed: int
) -> tuple[list[KnowledgeProbe], TimedBackend, float]:
    backend.prefix_reuse, backend.min_reuse_saving = stage.prefix_reuse, stage.min_reuse_saving
    hf_generation._COMPACT_EVERY = stage.compact_every
    backend.generation_planner = BatchPlanner("auto", stage.generation_budget)
    backend._prefix_cache.clear()  # every stage starts cold
    prober_cls = LegacyKnowledgeProber if stage.legacy else KnowledgeProber
    timed = TimedBackend(backend)
    start = time.perf_counter()
    probes = prober_cls(seed=seed + stage.seed_offset, progress=False).probe_qa(timed, items)
    return probes, timed, time.perf_counter() - start


def stop_effect(texts: Sequence[str]) -> dict[str, Any]:
    """How many unstopped samples read differently once cut at the first newline."""
    changed = [t for t in texts if first_line(t) != first_line(cut_at_stops(t, ANSWER_STOP))]
    return {
        "n_samples": len(texts),
        "n_changed": len(changed),
        "examples": [repr(t[:60]) for t in changed[:5]],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32, help="questions (spread over the file)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NQ-Open JSONL (else the shipped facts)")
    names = [stage.name for stage in STAGES]
    parser.add_argument("--stages", nargs="+", default=names, choices=names, help="stages to run (old first)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=130)
    source = args.data if args.data.exists() else shipped_facts()
    items = load_qa(source, limit=args.n)
    backend = HFBackend.from_spec("default", progress=False)
    machine = machine_info()
    prober = KnowledgeProber()
    config = {
        "n_questions": len(items),
        "source": str(source.relative_to(REPO_ROOT.parent) if source.is_relative_to(REPO_ROOT.parent) else source),
        "k": prober.k,
        "temperature": prober.temperature,
        "max_new_tokens": prober.max_new_tokens,
        "chunk_size": prober.chunk_size,
        "seed": args.seed,
        "generation_budget_old_new": [OLD_BUDGET, NEW_BUDGET],
        "compact_every": COMPACT_EVERY,
    }
    console.print(f"{len(items)} questions from {config['source']}; torch threads {torch.get_num_threads()}")
    backend.generate(["warm-up"], max_new_tokens=2)

    stages: list[dict[str, Any]] = []
    reference: list[KnowledgeProbe] | None = None
    effect: dict[str, Any] | None = None
    for stage in STAGES:
        name, description = stage.name, stage.description
        if name not in args.stages:
            continue
        probes, timed, seconds = run_stage(backend, items, stage, args.seed)
        console.print(f"  {name}: {seconds:.1f} s", highlight=False)
        if name == "old":
            effect = stop_effect(timed.sampled_texts)
        reference = reference or probes
        stages.append(
            {
                "stage": name,
                "description": description,
                "seconds": seconds,
                "greedy_seconds": timed.seconds["greedy"],
                "sampled_seconds": timed.seconds["sampled"],
                "seconds_per_question": seconds / len(items),
                "subsets": dict(Counter(p.subset for p in probes)),
                "reference_stage": stages[0]["stage"] if stages else name,
                "n_greedy_differ": sum(a.greedy != b.greedy for a, b in zip(probes, reference, strict=True)),
                "n_subset_differ": sum(a.subset != b.subset for a, b in zip(probes, reference, strict=True)),
            }
        )
    for row in stages:
        row["speedup"] = stages[0]["seconds"] / row["seconds"]

    table = Table(title=f"Knowledge probing, {len(items)} questions, k={prober.k}, default model")
    for column in ("stage", "change", "s", "greedy s", "sampled s", "s/question", "speed-up", "greedy ≠", "subset ≠"):
        table.add_column(column, justify="left" if column in ("stage", "change") else "right")
    for s in stages:
        table.add_row(
            s["stage"], s["description"], f"{s['seconds']:.1f}", f"{s['greedy_seconds']:.1f}",
            f"{s['sampled_seconds']:.1f}", f"{s['seconds_per_question']:.2f}", f"{s['speedup']:.1f}x",
            str(s["n_greedy_differ"]), str(s["n_subset_differ"]),
        )  # fmt: skip
    console.print(table)
    console.print("subsets: " + "; ".join(f"{s['stage']} {s['subsets']}" for s in stages), highlight=False)
    if effect is not None:
        console.print(
            f"stop effect on the old run's samples: {effect['n_changed']} of {effect['n_samples']} answers change",
            highlight=False,
        )

    payload = {
        "benchmark": "probe_generation",
        "command": "python benchmarks/bench_probe_generation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": backend.name,
        "machine": {**machine, "load_average_end": list(os.getloadavg())},
        "config": config,
        "stages": stages,
        "stop_effect": effect,
    }
    write_json_atomic(args.out, payload)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
