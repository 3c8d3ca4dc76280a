"""HFBackend on a CUDA GPU: equivalence checks, real out-of-memory recovery, and throughput.

The CPU test suite proves the backend's maths; this script checks what only a GPU can show:

1. fp32 on CUDA: batched == one-at-a-time, prefix reuse == no reuse, hidden states == transformers'
   ``output_hidden_states``, batched greedy generation == one-at-a-time (max |diff| printed).
2. bf16 (the default dtype on GPUs): the same comparisons, reported (bf16 is not bit-stable across
   batch shapes, so these are figures, not pass/fail).
3. ``batch_size="auto"`` meeting a real ``torch.OutOfMemoryError``: a token budget far larger than the
   card holds must be halved until it fits, and the results must equal a small fixed batch size.
4. Throughput on the 8-shot workload (shared demonstrations, two labels): a naive one-forward-per-
   request loop vs ours, tokens/s in bf16.

The model is SmolLM2-135M-shaped with random weights (its config and tokenizer), because the
converted default weights (540 MB) cannot travel to the GPU machine; speed depends on shape, not on
weight values. Run: ``python benchmarks/gpu_check.py --assets DIR --out FILE.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from biasaudit.backend.hf import HFBackend

DEMOS = [
    ("a gripping, beautifully acted story", "positive"),
    ("the plot never goes anywhere", "negative"),
    ("one of the best films of the year", "positive"),
    ("tedious and badly edited", "negative"),
    ("funny, warm and surprisingly wise", "positive"),
    ("i nearly fell asleep twice", "negative"),
    ("a small triumph of a movie", "positive"),
    ("the dialogue is painfully flat", "negative"),
]
WORDS = [
    "the",
    "film",
    "was",
    "a",
    "story",
    "about",
    "love",
    "loss",
    "and",
    "hope",
    "with",
    "actors",
    "who",
    "gave",
    "it",
    "everything",
    "they",
    "had",
]


def workload(n_queries: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    prefix = "".join(f"Review: {t}\nSentiment: {label}\n\n" for t, label in DEMOS)
    queries = [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 30)))) for _ in range(n_queries)]
    return [f"{prefix}Review: {q}\nSentiment:" for q in queries], [" positive", " negative"]


def naive_label_log_probs(model, tok, prompts, labels) -> np.ndarray:
    out = np.zeros((len(prompts), len(labels)))
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            for j, label in enumerate(labels):
                ctx = tok(p, add_special_tokens=False).input_ids
                whole = tok(p + label, add_special_tokens=False).input_ids
                ids = torch.tensor([whole], device=model.device)
                logits = model(ids).logits[0].float().log_softmax(-1)
                out[i, j] = sum(logits[len(ctx) - 1 + k, t].item() for k, t in enumerate(whole[len(ctx) :]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, required=True, help="folder with config.json + tokenizer")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--oom-requests", type=int, default=16384)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run that only checks the script works")
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("this script needs a CUDA GPU (or --smoke for a CPU dry run)")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    report: dict = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    tok = AutoTokenizer.from_pretrained(args.assets)
    config = AutoConfig.from_pretrained(args.assets)
    if args.smoke:
        config.num_hidden_layers, args.queries, args.oom_requests = 21, 16, 32
    torch.manual_seed(0)
    model32 = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device).eval()
    model32.requires_grad_(False)
    prompts, labels = workload(48, seed=0)
    mixed = [(p[-200 - 7 * i :], " negative and dull") for i, p in enumerate(prompts[:16])]

    def compare(model, tag: str) -> dict:
        ours = HFBackend(model, tok, progress=False)
        plain = HFBackend(model, tok, progress=False, prefix_reuse=False, batch_size=1)
        texts = [p[-120 - 5 * i :] for i, p in enumerate(prompts[:12])]
        hs = ours.hidden_states(texts, [3, 20])
        hs_diff = 0.0
        for i, t in enumerate(texts):
            with torch.inference_mode():
                ref = model(torch.tensor([tok(t).input_ids], device=device), output_hidden_states=True)
            for layer in (3, 20):
                hs_diff = max(
                    hs_diff,
                    float(np.abs(hs[layer][i] - ref.hidden_states[layer][0, -1].float().cpu().numpy()).max()),
                )
        gen_prompts = [p[-60 - 9 * i :] for i, p in enumerate(prompts[:6])]
        return {
            "label_first_token_batched_vs_single": float(
                np.abs(ours.label_log_probs(prompts, labels) - plain.label_log_probs(prompts, labels)).max()
            ),
            "full_sequence_prefix_vs_no_reuse": float(
                np.abs(
                    ours.label_log_probs(prompts, labels, mode="full_sequence")
                    - plain.label_log_probs(prompts, labels, mode="full_sequence")
                ).max()
            ),
            "loglikelihood_batched_vs_single": float(
                max(
                    abs(a.logprob - b.logprob)
                    for a, b in zip(ours.loglikelihood(mixed), plain.loglikelihood(mixed), strict=True)
                )
            ),
            "hidden_states_vs_transformers": hs_diff,
            "greedy_generate_batched_equals_single": ours.generate(gen_prompts, max_new_tokens=12)
            == [plain.generate([p], max_new_tokens=12)[0] for p in gen_prompts],
        }

    report["fp32"] = compare(model32, "fp32")
    print("fp32", report["fp32"], flush=True)
    model16 = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to(device).eval()
    model16.load_state_dict({k: v.to(torch.bfloat16) for k, v in model32.state_dict().items()})
    model16.requires_grad_(False)
    del model32
    report["bf16"] = compare(model16, "bf16")
    print("bf16", report["bf16"], flush=True)

    # Real OOM: 64M tokens per batch (16k requests of ~600 tokens at once) cannot fit; auto must halve.
    big_prompts, _ = workload(args.oom_requests, seed=1)
    big = [(p + " " + " ".join(WORDS * 12), " positive") for p in big_prompts]  # ~600 tokens each
    budget = 64_000_000 if device == "cuda" else 4096
    auto = HFBackend(model16, tok, progress=False, prefix_reuse=False, max_batch_tokens=budget)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    auto_lp = np.array([r.logprob for r in auto.loglikelihood(big)])
    report["oom"] = {
        "requests": len(big),
        "start_budget_tokens": budget,
        "budget_after_oom_tokens": auto.planner.max_batch_tokens,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda" else None,
    }
    fixed = HFBackend(model16, tok, progress=False, prefix_reuse=False, batch_size=64)
    fixed_lp = np.array([r.logprob for r in fixed.loglikelihood(big[:256])])
    report["oom"]["max_diff_vs_batch_64_first_256"] = float(np.abs(auto_lp[:256] - fixed_lp).max())
    print("oom", report["oom"], flush=True)

    # Throughput, bf16: naive loop (on a subset) vs ours.
    prompts, labels = workload(args.queries, seed=2)
    n_tokens = sum(len(tok(p + label, add_special_tokens=False).input_ids) for p in prompts for label in labels)
    ours = HFBackend(model16, tok, progress=False)
    ours.label_log_probs(prompts[:8], labels)
    sync()
    t = time.perf_counter()
    ours.label_log_probs(prompts, labels, mode="full_sequence")
    sync()
    ours_s = time.perf_counter() - t
    sub = prompts[:64]
    sub_tokens = sum(len(tok(p + label, add_special_tokens=False).input_ids) for p in sub for label in labels)
    naive_label_log_probs(model16, tok, sub[:2], labels)
    sync()
    t = time.perf_counter()
    naive_label_log_probs(model16, tok, sub, labels)
    sync()
    naive_s = time.perf_counter() - t
    report["throughput_bf16_8shot"] = {
        "queries": len(prompts),
        "naive_tokens_per_s": round(sub_tokens / naive_s),
        "ours_tokens_per_s": round(n_tokens / ours_s),
        "ratio_vs_naive": round((n_tokens / ours_s) / (sub_tokens / naive_s), 1),
    }
    print("throughput", report["throughput_bf16_8shot"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
