"""LVLM batching and debiased-decoding cost, measured as ratios against peers in the same run.

1. Label scoring of a probe under the real image and every reference input (``none``, ``blank``,
   ``noise``, ``unk``): one batch stream vs one row at a time (what a per-question loop does).
2. Greedy generation: plain vs with ``DebiasSamplingProcessor`` (its reference stream adds one forward
   per step; the expected cost is about 2x), and debiased decoding batched vs at batch size 1 (the
   official VDD code's only mode).

Runs on a tiny random LLaVA built on the spot (``--model DIR`` for a real one). On a tiny model the
figures measure the machinery (padding, per-call overhead), not a real model's compute. Prints a table
and writes ``benchmarks/results/lvlm.json``.

    python benchmarks/bench_lvlm.py [--n 96] [--model DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

from biasaudit.backend.vlm import VLMBackend
from biasaudit.jsonio import write_json_atomic
from biasaudit.lvlm import DebiasSamplingProcessor, make_probe
from biasaudit.lvlm.tiny_models import build_tiny_vlm

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "lvlm.json"
KINDS = ("image", "none", "blank", "noise", "unk")


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    """Fastest of ``repeats`` runs (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=96, help="probe questions")
    parser.add_argument("--model", type=str, default=None, help="a VLM folder (default: a tiny random LLaVA)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_vlm("llava", Path(tmp) / "llava"))
        batched = VLMBackend.from_spec(model, progress=False)
        single = VLMBackend(batched.model, batched.processor, batch_size=1, progress=False)
        items = make_probe("pope", args.n, seed=0)
        questions, images = [it.question for it in items], [it.image for it in items]
        labels = ["Yes", "No"]

        t_batched, scores_b = timed(lambda: batched.label_log_probs_by_input(questions, labels, images, KINDS), 1)
        t_single, scores_s = timed(lambda: single.label_log_probs_by_input(questions, labels, images, KINDS), 1)
        max_diff = max(float(np.abs(scores_b[k] - scores_s[k]).max()) for k in KINDS)

        def gen(backend: VLMBackend, debias: Any) -> list[str]:
            return backend.generate(questions, images=images, max_new_tokens=args.max_new_tokens, debias=debias)

        t_plain, _ = timed(lambda: gen(batched, None), args.repeats)
        t_debias, out_b = timed(lambda: gen(batched, DebiasSamplingProcessor()), args.repeats)
        t_debias_1, out_1 = timed(lambda: gen(single, DebiasSamplingProcessor()), 1)

    rows = {
        "scoring_5_inputs": {"batched_s": t_batched, "one_at_a_time_s": t_single, "speedup": t_single / t_batched,
                             "max_abs_logprob_diff": max_diff},
        "debias_overhead": {"plain_greedy_s": t_plain, "debiased_greedy_s": t_debias, "ratio": t_debias / t_plain},
        "debias_batching": {"batched_s": t_debias, "batch_size_1_s": t_debias_1, "speedup": t_debias_1 / t_debias,
                            "same_text": out_b == out_1},
    }  # fmt: skip
    print(f"LVLM machinery, {args.n} questions, model {model if args.model else 'tiny random LLaVA'}")
    print(f"{'measurement':<34}{'ours (s)':>10}{'peer (s)':>10}{'ratio':>8}")
    print(f"{'score 5 inputs: batched vs 1-by-1':<34}{t_batched:>10.2f}{t_single:>10.2f}{t_single / t_batched:>7.1f}x")
    print(f"{'debiased vs plain greedy':<34}{t_debias:>10.2f}{t_plain:>10.2f}{t_debias / t_plain:>7.2f}x cost")
    print(f"{'debiased: batched vs batch 1':<34}{t_debias:>10.2f}{t_debias_1:>10.2f}{t_debias_1 / t_debias:>7.1f}x")
    print(f"max |Δ log p| batched vs 1-by-1: {max_diff:.1e}; batched debiased text == batch-1 text: {out_b == out_1}")
    write_json_atomic(
        args.out,
        {"benchmark": "lvlm", "model": args.model or "tiny random LLaVA (biasaudit.lvlm.tiny_models)",
         "n": args.n, "max_new_tokens": args.max_new_tokens, "machine": machine_info(), "results": rows},
    )  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
