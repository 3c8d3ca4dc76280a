"""Log-likelihood scoring speed: a naive loop vs lm-evaluation-harness vs ``HFBackend``.

What it measures, on the default model (SmolLM2-135M-Instruct), in one process, on the same requests:

* **naive**: one forward per request with ``model(input_ids).logits``, log-softmax, sum of the
  continuation tokens' log-probs. It is also the reference for the correctness check.
* **lm-eval**: ``lm_eval.models.huggingface.HFLM`` wrapping the same in-memory model; batch sizes are
  swept on a subset and the fastest is timed on the full workload.
* **ours**: ``HFBackend(..., prefix_reuse=True)``, and ``prefix_reuse=False`` as an ablation.

Two workloads: an 8-shot SST-2 prompt (64 queries x 2 labels that share the demonstrations) and
unique prompts of mixed lengths (1-6 test sentences each, no shared prefix). For each scorer it reports
wall time, tokens/s (tokens = what a naive scorer processes: the sum of len(context + continuation)
tokens), speedups, the largest |log-prob difference| from the naive loop, and FLOP utilisation
(2 * n_params * tokens/s over the measured fp32 matmul FLOP/s of this machine).

On the few-shot workload it also profiles how the reused prefix reaches the suffix rows, in the same
run: the old path (the prefix KV cache broadcast into every row, SDPA) against shared-prefix attention
(``biasaudit/backend/prefix_attention.py``). For each: wall time, the share of CPU time in the model's
matmuls (torch.profiler self time of ``aten::linear``/``aten::addmm``/``aten::mm`` over all ops), and
tokens/s against the matmul floor (2 x non-embedding parameters x tokens run / the FLOP/s of
``torch.matmul`` on the model's own linear shapes, measured in the same run).

Run from the repository root (needs ``pip install -e '.[bench]'`` and the SST-2 files under
``../shared/data/fewshot_cls/sst2``)::

    python benchmarks/bench_scoring.py            # full run, several minutes on a laptop CPU
    python benchmarks/bench_scoring.py --quick    # smoke run
    python benchmarks/bench_scoring.py --profile-only --queries 16   # the prefix-path profile alone

It prints a table and writes ``benchmarks/results/scoring.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "scoring.json"
SST2_SUBDIR = Path("fewshot_cls") / "sst2"
LABEL_WORDS = {0: "negative", 1: "positive"}
# Targets stated by the issue: (workload, baseline) -> minimum speedup of ours (prefix_reuse=True).
# The model's matmuls in torch.profiler (self time; linear -> matmul -> mm or addmm on a CPU).
MATMUL_OPS = ("aten::linear", "aten::addmm", "aten::mm")
# Target of the shared-prefix attention issue: share of CPU time in the model's matmuls, 8-shot workload.
MATMUL_SHARE_TARGET = 0.75
PREFIX_PATHS = {"broadcast cache + sdpa": False, "shared-prefix attention": True}
TARGETS = {
    ("fewshot", "lm-eval"): 4.0,
    ("unique", "lm-eval"): 1.0,
    ("fewshot", "naive"): 10.0,
    ("unique", "naive"): 10.0,
}

Request = tuple[str, str]
TokenPair = tuple[list[int], list[int]]


# ---------------------------------------------------------------------------------------- workloads
def read_sst2(path: Path) -> list[tuple[int, str]]:
    """(label, sentence) per line of a ``<label 0/1> <sentence>`` file."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        label, _, sentence = line.strip().partition(" ")
        if sentence:
            rows.append((int(label), sentence))
    return rows


def fewshot_workload(
    train: Sequence[tuple[int, str]], test: Sequence[tuple[int, str]], shots: int, queries: int, seed: int
) -> list[Request]:
    """``queries`` x 2 requests (" positive" / " negative") after the same ``shots`` demonstrations."""
    rng = random.Random(seed)
    demos = "".join(f"Review: {s}\nSentiment: {LABEL_WORDS[y]}\n\n" for y, s in rng.sample(list(train), shots))
    return [
        (f"{demos}Review: {s}\nSentiment:", f" {word}")
        for _, s in rng.sample(list(test), queries)
        for word in ("positive", "negative")
    ]


def unique_workload(test: Sequence[tuple[int, str]], n_requests: int, seed: int) -> list[Request]:
    """``n_requests`` contexts of 1-6 test sentences, each starting with a different sentence.

    Even requests score a label word, odd ones the first words of the sentence that follows, so
    continuations are 1 to a few tokens and no two requests share more than a chance prefix.
    """
    rng = random.Random(seed + 1)
    sentences = [s for _, s in test]
    starts = rng.sample(range(len(sentences)), n_requests)
    requests = []
    for i, start in enumerate(starts):
        n = rng.randint(1, 6)
        chunk = [sentences[(start + k) % len(sentences)] for k in range(n + 1)]
        context = " ".join(chunk[:n])
        continuation = (
            f" {rng.choice(list(LABEL_WORDS.values()))}" if i % 2 == 0 else " " + " ".join(chunk[n].split()[:3])
        )
        requests.append((context, continuation))
    return requests


def split_tokens(tokenizer: Any, context: str, continuation: str) -> TokenPair:
    """(context, continuation) token ids, split as lm-eval's ``TemplateLM._encode_pair`` does for causal LMs.

    Trailing whitespace moves to the continuation; the continuation is what follows the context's
    own encoding inside the encoding of the joined text. No special tokens (SmolLM2 adds no BOS).
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    ctx = tokenizer(context, add_special_tokens=False).input_ids
    return list(ctx), list(whole[len(ctx) :])


def shared_prefix_fraction(pairs: Sequence[TokenPair]) -> float:
    """Share of all tokens that repeat the longest common prefix with a lexicographic neighbour."""
    seqs = sorted(tuple(c + x) for c, x in pairs)
    shared = 0
    for a, b in itertools.pairwise(seqs):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        shared += n
    return shared / max(1, sum(len(s) for s in seqs))


# ------------------------------------------------------------------------------------------ scorers
def naive_scores(model: Any, tokenizer: Any, requests: Sequence[Request]) -> np.ndarray:
    """Summed continuation log-probs, one unbatched forward per request: (n_requests,)."""
    out = np.zeros(len(requests), dtype=np.float64)
    with torch.inference_mode():
        for i, (context, continuation) in enumerate(requests):
            ctx, cont = split_tokens(tokenizer, context, continuation)
            ids = torch.tensor([ctx + cont[:-1]])
            logits = model(ids).logits[0, len(ctx) - 1 :]
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            out[i] = log_probs[torch.arange(len(cont)), torch.tensor(cont)].double().sum().item()
    return out


def make_lm_eval(model: Any, tokenizer: Any, batch_size: int) -> Any:
    from lm_eval.models.huggingface import HFLM

    # A non-str ``pretrained`` is used as is (HFLM.__init__ skips loading and distributed set-up).
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def lm_eval_scores(lm: Any, requests: Sequence[Request]) -> np.ndarray:
    from lm_eval.api.instance import Instance

    instances = [Instance(request_type="loglikelihood", doc={}, arguments=req, idx=i) for i, req in enumerate(requests)]
    return np.array([lp for lp, _ in lm.loglikelihood(instances, disable_tqdm=True)], dtype=np.float64)


def backend_scores(backend: Any, requests: Sequence[Request]) -> np.ndarray:
    return np.array([r.logprob for r in backend.loglikelihood(list(requests))], dtype=np.float64)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------ machine
def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of an n x n @ n x n matmul at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def linear_matmul_flops(config: Any, rows: int = 1024, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of one decoder layer's linear maps (q, k, v, o, gate, up, down) on ``rows`` tokens.

    The model's own shapes (576 wide for SmolLM2-135M) run well below a square 2048 matmul's rate, so
    this is the fair floor for the model's matmuls.
    """
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q_out, kv_out = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    shapes = [(hidden, q_out), (hidden, kv_out), (hidden, kv_out), (q_out, hidden), (hidden, inter), (hidden, inter)]
    shapes.append((inter, hidden))
    inputs = {k: torch.randn(rows, k) for k, _ in shapes}
    weights = [torch.randn(k, n) for k, n in shapes]

    def layer() -> None:
        for (k, _), w in zip(shapes, weights, strict=True):
            torch.matmul(inputs[k], w)

    layer()  # warm-up
    best = min(timed(layer) for _ in range(repeats))
    return 2 * rows * sum(k * n for k, n in shapes) / best


def counting_real_tokens(backend: Any) -> list[int]:
    """Tokens (padding left out) of each forward ``backend`` runs; the list grows as it works."""
    counts: list[int] = []
    original = backend._forward_states

    def counting(ids: torch.Tensor, mask: torch.Tensor, **kwargs: Any) -> Any:
        counts.append(int(mask[:, -ids.shape[1] :].sum()))
        return original(ids, mask, **kwargs)

    backend._forward_states = counting
    return counts


def matmul_share(backend: Any, requests: Sequence[Request]) -> tuple[float, dict[str, float]]:
    """(share of profiled CPU self time in ``MATMUL_OPS``, the five largest ops' shares) for one call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        backend_scores(backend, requests)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    top = sorted(self_us, key=self_us.__getitem__, reverse=True)[:5]
    return sum(self_us.get(op, 0.0) for op in MATMUL_OPS) / total, {op: self_us[op] / total for op in top}


def profile_prefix_paths(
    requests: list[Request], model: Any, tokenizer: Any, repeats: int, linear_flops: float, non_embedding: int
) -> dict[str, Any]:
    """The old and new ways a reused prefix reaches the suffix rows, timed and profiled in one run."""
    from biasaudit.backend.hf import HFBackend

    print(f"\n[prefix paths] {len(requests)} few-shot requests", flush=True)
    backends = {
        key: HFBackend(model, tokenizer, shared_prefix_attention=shared, progress=False, prefix_cache_size=0)
        for key, shared in PREFIX_PATHS.items()
    }
    tokens = {key: counting_real_tokens(b) for key, b in backends.items()}
    rounds: dict[str, list[float]] = {key: [] for key in backends}
    scores: dict[str, np.ndarray] = {}
    load = []
    for r in range(repeats):  # interleaved, fastest kept (see ``run_workload``)
        load.append(os.getloadavg()[0])
        for key, b in backends.items():
            tokens[key].clear()
            start = time.perf_counter()
            scores[key] = backend_scores(b, requests)
            rounds[key].append(time.perf_counter() - start)
            print(f"  round {r + 1} {key:<24}{rounds[key][-1]:8.2f} s", flush=True)
    paths = {}
    for key, b in backends.items():
        n_tokens, seconds = sum(tokens[key]), min(rounds[key])
        share, top_ops = matmul_share(b, requests)
        floor_seconds = 2 * non_embedding * n_tokens / linear_flops
        paths[key] = {
            "seconds": seconds,
            "seconds_per_round": rounds[key],
            "tokens_run": n_tokens,
            "tokens_per_s": n_tokens / seconds,
            "matmul_floor_tokens_per_s": n_tokens / floor_seconds,
            "fraction_of_matmul_floor": floor_seconds / seconds,
            "matmul_share": share,
            "top_ops_share": top_ops,
            "prefix_attention_unavailable": b.prefix_attention_unavailable,
        }
    old, new = (paths[key] for key in PREFIX_PATHS)
    return {
        "n_requests": len(requests),
        "load_average_1min_per_round": load,
        "load_average_end": list(os.getloadavg()),
        "linear_matmul_flops_per_s": linear_flops,
        "non_embedding_params": non_embedding,
        "matmul_ops": list(MATMUL_OPS),
        "matmul_share_formula": "self CPU time of matmul_ops / self CPU time of all ops (torch.profiler, one call)",
        "matmul_floor_formula": "2 * non_embedding_params * tokens_run / linear_matmul_flops_per_s",
        "matmul_share_target": MATMUL_SHARE_TARGET,
        "speedup": old["seconds"] / new["seconds"],
        "max_abs_diff": float(np.max(np.abs(scores["shared-prefix attention"] - scores["broadcast cache + sdpa"]))),
        "paths": paths,
    }


def print_prefix_table(profile: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Few-shot prefix paths (one run, same requests)")
    for col in ("path", "time s", "tok/s", "floor tok/s", "x floor", "matmul share"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for key, p in profile["paths"].items():
        table.add_row(
            key,
            f"{p['seconds']:.2f}",
            f"{p['tokens_per_s']:,.0f}",
            f"{p['matmul_floor_tokens_per_s']:,.0f}",
            f"{p['fraction_of_matmul_floor']:.1%}",
            f"{p['matmul_share']:.1%}",
        )
    Console(width=120).print(table)
    print(
        f"speedup {profile['speedup']:.2f}x, max |Δ| {profile['max_abs_diff']:.1e}, "
        f"1-min load average per round {profile['load_average_1min_per_round']}"
    )


# --------------------------------------------------------------------------------------------- main
def run_workload(
    name: str,
    requests: list[Request],
    model: Any,
    tokenizer: Any,
    batch_sizes: Sequence[int],
    sweep_requests: int,
    repeats: int,
    flops_per_s: float,
    n_params: int,
) -> dict[str, Any]:
    from biasaudit.backend.hf import HFBackend

    pairs = [split_tokens(tokenizer, c, x) for c, x in requests]
    n_tokens = sum(len(c) + len(x) for c, x in pairs)
    lengths = [len(c) + len(x) for c, x in pairs]
    print(f"\n[{name}] {len(requests)} requests, {n_tokens} tokens (mean {np.mean(lengths):.0f})", flush=True)

    # A leading slice keeps each few-shot query's two labels together, as in the full workload. Like the
    # timed rounds below, sweep rounds interleave the batch sizes and keep each one's fastest time.
    subset = requests[:sweep_requests]
    sweepers = {bs: make_lm_eval(model, tokenizer, bs) for bs in batch_sizes}
    sweep = dict.fromkeys(batch_sizes, float("inf"))
    for r in range(repeats):
        for bs, lm in sweepers.items():
            seconds = timed(lambda lm=lm: lm_eval_scores(lm, subset))
            sweep[bs] = min(sweep[bs], seconds)
            print(f"  sweep {r + 1} lm-eval bs={bs:<3}     {seconds:8.2f} s ({len(subset)} requests)", flush=True)
    best_bs = min(sweep, key=sweep.__getitem__)

    lm = sweepers[best_bs]
    backends = {
        key: HFBackend(model, tokenizer, prefix_reuse=reuse, progress=False)
        for key, reuse in (("ours", True), ("ours (no prefix reuse)", False))
    }
    runners: dict[str, Callable[[], np.ndarray]] = {
        "naive": lambda: naive_scores(model, tokenizer, requests),
        "lm-eval": lambda: lm_eval_scores(lm, requests),
        **{key: (lambda b=b: backend_scores(b, requests)) for key, b in backends.items()},
    }
    # Rounds interleave the scorers and each keeps its fastest round, so a burst of load from other
    # processes on a shared machine does not land on one scorer only.
    rounds: dict[str, list[float]] = {key: [] for key in runners}
    scores: dict[str, np.ndarray] = {}
    load_per_round = []
    for r in range(repeats):
        load_per_round.append(os.getloadavg()[0])
        for key, fn in runners.items():
            start = time.perf_counter()
            scores[key] = fn()
            rounds[key].append(time.perf_counter() - start)
            print(f"  round {r + 1} {key:<22}{rounds[key][-1]:8.2f} s", flush=True)
    timings = {key: min(seconds) for key, seconds in rounds.items()}

    scorers = {}
    for key, seconds in timings.items():
        tokens_per_s = n_tokens / seconds
        scorers[key] = {
            "seconds": seconds,
            "seconds_per_round": rounds[key],
            "tokens_per_s": tokens_per_s,
            "speedup_vs_naive": timings["naive"] / seconds,
            "speedup_vs_lm_eval": timings["lm-eval"] / seconds,
            "max_abs_diff_vs_naive": float(np.max(np.abs(scores[key] - scores["naive"]))),
            "flop_utilisation": 2 * n_params * tokens_per_s / flops_per_s,
        }
    scorers["lm-eval"]["batch_size"] = best_bs
    for key, b in backends.items():
        scorers[key]["prefix_reuse_effective"] = b.prefix_reuse
    return {
        "n_requests": len(requests),
        "n_tokens": n_tokens,
        "tokens_per_request": {"mean": float(np.mean(lengths)), "min": min(lengths), "max": max(lengths)},
        "shared_prefix_fraction": shared_prefix_fraction(pairs),
        "load_average_1min_per_round": load_per_round,
        "lm_eval_sweep": {"n_requests": len(subset), "seconds_by_batch_size": sweep, "best": best_bs},
        "scorers": scorers,
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Log-likelihood scoring, default model")
    for col in ("workload", "scorer", "time s", "tok/s", "x naive", "x lm-eval", "max |Δ|", "FLOP util"):
        table.add_column(col, justify="left" if col in ("workload", "scorer") else "right")
    for workload, res in results.items():
        for key, s in res["scorers"].items():
            label = f"{key} (bs={s['batch_size']})" if "batch_size" in s else key
            table.add_row(
                workload,
                label,
                f"{s['seconds']:.2f}",
                f"{s['tokens_per_s']:,.0f}",
                f"{s['speedup_vs_naive']:.2f}",
                f"{s['speedup_vs_lm_eval']:.2f}",
                f"{s['max_abs_diff_vs_naive']:.1e}",
                f"{s['flop_utilisation']:.1%}",
            )
    Console(width=120).print(table)


def check_targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for (workload, baseline), target in TARGETS.items():
        if workload not in results:
            continue
        key = "speedup_vs_lm_eval" if baseline == "lm-eval" else "speedup_vs_naive"
        value = results[workload]["scorers"]["ours"][key]
        checks.append(
            {
                "workload": workload,
                "baseline": baseline,
                "target": target,
                "value": value,
                "met": value >= target,
            }
        )
        verdict = "MET" if value >= target else "NOT MET"
        print(f"target ours >= {target:g}x {baseline} on {workload}: {value:.2f}x -> {verdict}")
    return checks


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=64, help="few-shot test queries (2 requests each)")
    parser.add_argument("--shots", type=int, default=8, help="few-shot demonstrations")
    parser.add_argument("--unique", type=int, default=128, help="requests in the unique-prompt workload")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32", help="lm-eval batch sizes to sweep")
    parser.add_argument("--sweep-requests", type=int, default=32, help="requests in the lm-eval sweep")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timing rounds (fastest kept)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="only the few-shot prefix-path profile (old vs shared-prefix attention); size it with --queries",
    )
    args = parser.parse_args(argv)
    if args.profile_only and args.out == DEFAULT_OUT:
        args.out = DEFAULT_OUT.with_name("scoring_prefix_paths.json")
    if args.quick:
        args.queries, args.shots, args.unique = 4, 2, 8
        args.batch_sizes, args.sweep_requests = "1,4", 4
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sst2 = args.data_dir / SST2_SUBDIR
    train_path, test_path = sst2 / "stsa.binary.train", sst2 / "stsa.binary.test"
    missing = [str(p) for p in (train_path, test_path) if not p.is_file()]
    if missing:
        print(f"skipped: SST-2 data not found ({', '.join(missing)}); pass --data-dir")
        return 0
    if importlib.util.find_spec("lm_eval") is None:
        if not args.profile_only:
            print("lm-evaluation-harness is not installed: pip install -e '.[bench]'", file=sys.stderr)
            return 1
    else:
        import lm_eval  # noqa: F401  (for its version below)

        logging.getLogger("lm_eval").setLevel(logging.ERROR)

    from biasaudit.backend.hf import HFBackend
    from biasaudit.models import load_model

    info = machine_info(lm_eval=getattr(sys.modules.get("lm_eval"), "__version__", "unknown"))
    flops_per_s = matmul_flops()
    loaded = load_model("default")
    model, tokenizer = loaded.model, loaded.tokenizer
    n_params = sum(p.numel() for p in model.parameters())
    non_embedding = n_params - model.get_input_embeddings().weight.numel()
    linear_flops = linear_matmul_flops(model.config)
    print(
        f"{loaded.name}: {n_params / 1e6:.1f}M params ({non_embedding / 1e6:.1f}M non-embedding); "
        f"{info['cpu_count']} CPUs, {info['torch_threads']} threads, matmul {flops_per_s / 1e9:.1f} GFLOP/s "
        f"(2048 square), {linear_flops / 1e9:.1f} GFLOP/s (the model's linear shapes)"
    )

    # Warm up every scorer once on a tiny input, so no timing includes one-off initialisation.
    tiny = [("Review: fine\nSentiment:", " positive"), ("Review: bad\nSentiment:", " negative")]
    if not args.profile_only:
        naive_scores(model, tokenizer, tiny)
        lm_eval_scores(make_lm_eval(model, tokenizer, 2), tiny)
    for reuse in (True, False):
        backend_scores(HFBackend(model, tokenizer, prefix_reuse=reuse, progress=False), tiny)

    train, test = read_sst2(train_path), read_sst2(test_path)
    workloads = {
        "fewshot": fewshot_workload(train, test, args.shots, args.queries, args.seed),
        "unique": unique_workload(test, args.unique, args.seed),
    }
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    results = (
        {}
        if args.profile_only
        else {
            name: run_workload(
                name,
                reqs,
                model,
                tokenizer,
                batch_sizes,
                args.sweep_requests,
                args.repeats,
                flops_per_s,
                n_params,
            )
            for name, reqs in workloads.items()
        }
    )
    prefix_paths = profile_prefix_paths(
        workloads["fewshot"], model, tokenizer, args.repeats, linear_flops, non_embedding
    )
    print()
    if results:
        print_table(results)
    print_prefix_table(prefix_paths)
    checks = check_targets(results)
    share = prefix_paths["paths"]["shared-prefix attention"]["matmul_share"]
    checks.append(
        {
            "workload": "fewshot",
            "baseline": "matmul share of CPU time (shared-prefix attention)",
            "target": MATMUL_SHARE_TARGET,
            "value": share,
            "met": share >= MATMUL_SHARE_TARGET,
        }
    )
    verdict = "MET" if share >= MATMUL_SHARE_TARGET else "NOT MET"
    print(f"target matmul share >= {MATMUL_SHARE_TARGET:.0%} on fewshot: {share:.1%} -> {verdict}")

    info["load_average_end"] = list(os.getloadavg())
    report = {
        "benchmark": "scoring",
        "command": "python benchmarks/bench_scoring.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": loaded.name,
        "n_params": n_params,
        "machine": info,
        "matmul_flops_per_s": flops_per_s,
        "linear_matmul_flops_per_s": linear_flops,
        "non_embedding_params": non_embedding,
        # Effective: tokens are what a naive scorer processes, so a scorer that skips work can pass 100%.
        "flop_utilisation_formula": "2 * n_params * tokens_per_s / matmul_flops_per_s",
        "config": {
            "shots": args.shots,
            "queries": args.queries,
            "unique_requests": args.unique,
            "seed": args.seed,
            "batch_sizes": batch_sizes,
            "sweep_requests": args.sweep_requests,
            "repeats": args.repeats,
            "quick": args.quick,
            "profile_only": args.profile_only,
        },
        "workloads": results,
        "prefix_paths": prefix_paths,
        "targets": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
