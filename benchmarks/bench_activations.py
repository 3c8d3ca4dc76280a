"""Activation extraction speed: forward hooks vs a plain forward, ActivationStore, TransformerLens, nnsight.

What it measures, on the default model (SmolLM2-135M-Instruct, 30 layers, hidden 576, fp32), in one
process, on the same texts tokenised the same way and cut into the same batches (``HFBackend.planner``:
length-sorted, right-padded, token budget):

* **plain forward**: the decoder body (``backend._body``) over those batches under
  ``torch.inference_mode()``: every layer runs, nothing is read out. The reference for the ratios.
* **ours**: ``HFBackend.iter_hidden_states`` (hooks on the decoder layers, last-token pooling, forward
  stopped after the deepest requested layer) for all 30 layers (the hook overhead is this over the plain
  forward; target <= 10%) and for one middle layer (the early-stop gain);
* **ActivationStore**: cold (empty cache folder: extraction + shard writes) and warm (everything cached:
  a fresh store reading the shards from disk, and the same store answering from memory);
* **per-token states**: ``HFBackend.iter_token_states`` at the middle layer (every token, no pooling);
* **TransformerLens** ``run_with_cache`` (``names_filter`` = the same ``resid_post`` hooks), through
  ``TransformerBridge.boot_transformers(hf_model=...)`` (TL 3.x, wraps a loaded HF model) and the legacy
  ``HookedTransformer`` (built from a Llama config with TL's own weight conversion);
* **nnsight**: ``NNsight(model).trace(...)`` saving the last-token state of each layer, stopped after the
  deepest one like ours.

Tokens/s counts real (unpadded) tokens. Every method's pooled output is checked against ours (which
is itself checked against ``output_hidden_states=True`` of the unpadded model on a subset) before its
time counts: a fast wrong number is worthless. Methods are interleaved batch by batch (each runs the
texts of one planner batch, back to back with the others, the order rotating), so load from other
processes hits them alike; a method's time is the sum over batches of its median round.

Run from the repository root (TransformerLens and nnsight are optional; a missing one is reported)::

    python benchmarks/bench_activations.py            # full run, ~25 minutes on 2 shared CPU cores
    python benchmarks/bench_activations.py --quick    # smoke run

It prints a table and writes ``benchmarks/results/activations.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "activations.json"
BOOLQ = Path("boolq") / "dev_sub3000.jsonl"
HOOK_OVERHEAD_TARGET = 0.10
# An output agrees with ours when max |diff| / max |ours| is below this (fp32; kernels may reorder sums).
REL_TOLERANCE = 1e-3
# Texts checked against the model's own output_hidden_states (unbatched, unpadded).
N_REFERENCE_TEXTS = 16

NOTES = [
    "tokens/s counts real (unpadded) tokens; every method runs the same batches (HFBackend.planner, "
    "right padding) and pays the same tokenisation and padding.",
    "methods run interleaved batch by batch (each on the texts of one planner batch); a method's time is the "
    "sum over batches of its median round (*_fastest: of its fastest round). speed_vs_plain = plain time / "
    "method time; overhead_vs_plain = method time / plain time - 1; overhead_vs_plain_median_same_round = "
    "median over rounds of that ratio within one round.",
    "checks compare each method's last-token states with ours (30 layers) at the layers it returns; ours "
    "is checked against output_hidden_states of the unpadded model on the first texts.",
    "ActivationStore figures include hashing the texts and reading/writing .npz shards in a temp folder.",
    "on a small CPU shared with other jobs (see machine.load_average_*) absolute times vary 2-3x from minute to "
    "minute: read the ratios, not the tokens/s.",
]
Pooled = dict[int, np.ndarray]  # layer -> (n_texts, hidden) float32


# ---------------------------------------------------------------------------------------- workload
def template_pool() -> list[str]:
    """Every distinct template x seed-word sentence of the shipped concept groups, in a fixed order."""
    from biasaudit.concepts.definition import load_concept_group, shipped_groups
    from biasaudit.concepts.sources import template_texts

    texts: dict[str, None] = {}
    for name in shipped_groups():
        group = load_concept_group(name)
        for spec in group.concepts:
            texts.update((sentence, None) for sentence, _, _ in template_texts(group, spec))
    return list(texts)


def boolq_passages(data_dir: Path) -> list[str]:
    path = data_dir / BOOLQ
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(dict.fromkeys(r["passage"].strip() for r in rows if r["passage"].strip()))


def build_texts(n_templates: int, n_passages: int, seed: int, data_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """Short concept sentences plus (when the shared data is there) longer BoolQ passages, shuffled."""
    rng = random.Random(seed)
    pool = template_pool()
    templates = rng.sample(pool, min(n_templates, len(pool)))
    passages_all = boolq_passages(data_dir)
    passages = rng.sample(passages_all, min(n_passages, len(passages_all)))
    texts = templates + passages
    rng.shuffle(texts)
    source = {
        "concept_templates": {"n": len(templates), "pool": len(pool), "from": "probes/concepts/*.yaml"},
        "boolq_passages": {
            "n": len(passages),
            "from": str(BOOLQ) if passages_all else None,
            "note": None if passages_all else f"{data_dir / BOOLQ} not found: passages skipped",
        },
    }
    return texts, source


# ------------------------------------------------------------------------------------------ methods
@dataclass
class Method:
    """A timed extraction: ``run(texts)`` returns pooled last-token states (or None for the plain forward)."""

    key: str
    label: str
    run: Callable[[Sequence[str]], Any]
    group: str = ""  # methods of one group run back to back in a round (store cold before warm)
    layers: list[int] = field(default_factory=list)


def batches(backend: Any, encoded: list[list[int]]) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """The backend's own batches: (text indices, ids, attention mask), length-sorted and right-padded."""
    for batch, (ids, mask) in backend.planner.map(
        [len(e) for e in encoded], lambda b: backend._right_padded([encoded[i] for i in b])
    ):
        yield batch, ids, mask


def encode(backend: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids as ``iter_hidden_states`` makes them (an empty text becomes the prefix token)."""
    return [ids or [backend._prefix_token_id] for ids in backend._encode_many(texts)]


def last_token(h: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """(batch, seq, d) -> (batch, d) float32: each row's last real token (right padding)."""
    lengths = mask.sum(dim=1)
    return h[torch.arange(h.shape[0]), lengths - 1].float().cpu().numpy()


def collect(n: int, hidden: int, layers: Sequence[int], stream: Iterator[tuple[np.ndarray, Pooled]]) -> Pooled:
    out = {layer: np.zeros((n, hidden), dtype=np.float32) for layer in layers}
    for batch, pooled in stream:
        for layer in layers:
            out[layer][batch] = pooled[layer]
    return out


def plain_forward(backend: Any) -> Callable[[Sequence[str]], None]:
    def run(texts: Sequence[str]) -> None:
        with torch.inference_mode():
            for _, ids, mask in batches(backend, encode(backend, texts)):
                backend._body(input_ids=ids, attention_mask=mask, use_cache=False)

    return run


def ours(backend: Any, layers: list[int]) -> Callable[[Sequence[str]], Pooled]:
    def run(texts: Sequence[str]) -> Pooled:
        return collect(len(texts), backend.hidden_size, layers, backend.iter_hidden_states(texts, layers))

    return run


def token_states(backend: Any, layer: int) -> Callable[[Sequence[str]], list[Any]]:
    def run(texts: Sequence[str]) -> list[Any]:
        return list(backend.iter_token_states(texts, [layer]))

    return run


class StoreRuns:
    """ActivationStore cold (new empty folder each round) then warm from disk and from memory."""

    def __init__(self, backend: Any, layers: list[int], root: Path) -> None:
        self.backend, self.layers, self.root = backend, layers, root
        self.store: Any = None
        self.folder: Path | None = None
        self.n_rounds = 0

    def cold(self, texts: Sequence[str]) -> Pooled:
        from biasaudit.concepts.activations import ActivationStore

        self.n_rounds += 1
        self.folder = Path(tempfile.mkdtemp(prefix=f"cold{self.n_rounds}-", dir=self.root))
        self.store = ActivationStore(self.backend, self.folder, progress=False)
        return self.store.get(list(texts), self.layers)

    def warm_disk(self, texts: Sequence[str]) -> Pooled:
        from biasaudit.concepts.activations import ActivationStore

        store = ActivationStore(self.backend, self.folder, progress=False)
        out = store.get(list(texts), self.layers)
        assert store.n_computed == 0, "warm store recomputed activations"
        return out

    def warm_memory(self, texts: Sequence[str]) -> Pooled:
        n_before = self.store.n_computed
        out = self.store.get(list(texts), self.layers)
        assert self.store.n_computed == n_before, "warm store recomputed activations"
        return out


def load_hf_copy() -> Any:
    """A second copy of the default model (external libraries wrap or patch the module they are given)."""
    from transformers import AutoModelForCausalLM

    from biasaudit.models import resolve_model_path

    path, _ = resolve_model_path("default")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval().requires_grad_(False)


def tl_bridge_methods(backend: Any, layers: list[int], mid: int) -> tuple[list[Method], dict[str, Any]]:
    """TransformerLens 3.x ``TransformerBridge`` around an already-loaded HF model (no hub access)."""
    from importlib.metadata import version

    from transformer_lens.model_bridge import TransformerBridge

    from biasaudit.models import resolve_model_path

    path, _ = resolve_model_path("default")
    hf = load_hf_copy()
    bridge = TransformerBridge.boot_transformers(path, hf_model=hf, tokenizer=backend.tokenizer, device="cpu")
    names = {layer: f"blocks.{layer - 1}.hook_resid_post" for layer in layers}

    def make(wanted: list[int], stop_at: int | None) -> Callable[[Sequence[str]], Pooled]:
        def run(texts: Sequence[str]) -> Pooled:
            out = {layer: np.zeros((len(texts), backend.hidden_size), dtype=np.float32) for layer in wanted}
            with torch.inference_mode():
                for batch, ids, mask in batches(backend, encode(backend, texts)):
                    _, cache = bridge.run_with_cache(
                        ids,
                        attention_mask=mask,
                        names_filter=[names[layer] for layer in wanted],
                        return_type=None,
                        stop_at_layer=stop_at,
                    )
                    for layer in wanted:
                        out[layer][batch] = last_token(cache[names[layer]], mask)
            return out

        return run

    info = {
        "status": "ok",
        "version": version("transformer-lens"),
        "how": "TransformerBridge.boot_transformers(<local model folder>, hf_model=<loaded HF model>, "
        "tokenizer=...); run_with_cache(ids, attention_mask=mask, names_filter=[blocks.{L-1}.hook_resid_post], "
        "return_type=None[, stop_at_layer=L])",
        "attn_implementation": hf.config._attn_implementation,
        "note": "all layers: no stop_at_layer exists after the last block, so the HF forward also runs the final "
        "norm and the LM head on every position (about a fifth of this model's FLOPs)",
    }
    methods = [
        Method("tl_bridge_all", "TL TransformerBridge run_with_cache, 30 layers", make(layers, None), layers=layers),
        Method("tl_bridge_mid", f"TL TransformerBridge run_with_cache, layer {mid}", make([mid], mid), layers=[mid]),
    ]
    return methods, info


def tl_hooked_methods(backend: Any, layers: list[int], mid: int) -> tuple[list[Method], dict[str, Any]]:
    """Legacy ``HookedTransformer``: SmolLM2 is not in TL's model list, so its Llama branch is built by hand."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    hc = backend.model.config
    cfg = HookedTransformerConfig(  # as loading_from_pretrained's LlamaForCausalLM branch maps an HF config
        d_model=hc.hidden_size,
        d_head=hc.head_dim,
        n_heads=hc.num_attention_heads,
        d_mlp=hc.intermediate_size,
        n_layers=hc.num_hidden_layers,
        n_ctx=hc.max_position_embeddings,
        eps=hc.rms_norm_eps,
        d_vocab=hc.vocab_size,
        act_fn=hc.hidden_act,
        n_key_value_heads=hc.num_key_value_heads if hc.num_key_value_heads != hc.num_attention_heads else None,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=hc.head_dim,
        rotary_base=hc.rope_parameters["rope_theta"],
        final_rms=True,
        gated_mlp=True,
        original_architecture="LlamaForCausalLM",
        dtype=torch.float32,
        device="cpu",
        default_prepend_bos=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=backend.tokenizer, move_to_device=False)
    # No folding or centring: the residual stream must stay the model's, not an equivalent reparametrisation.
    model.load_and_process_state_dict(
        convert_llama_weights(backend.model, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    model.eval()
    names = {layer: f"blocks.{layer - 1}.hook_resid_post" for layer in layers}

    def make(wanted: list[int], stop_at: int | None) -> Callable[[Sequence[str]], Pooled]:
        def run(texts: Sequence[str]) -> Pooled:
            out = {layer: np.zeros((len(texts), backend.hidden_size), dtype=np.float32) for layer in wanted}
            with torch.inference_mode():
                for batch, ids, mask in batches(backend, encode(backend, texts)):
                    _, cache = model.run_with_cache(
                        ids,
                        attention_mask=mask,
                        names_filter=[names[layer] for layer in wanted],
                        return_type=None,
                        stop_at_layer=stop_at,
                    )
                    for layer in wanted:
                        out[layer][batch] = last_token(cache[names[layer]], mask)
            return out

        return run

    info = {
        "status": "ok",
        "how": "HookedTransformer(HookedTransformerConfig from the HF Llama config, as TL's LlamaForCausalLM branch "
        "does) + load_and_process_state_dict(convert_llama_weights(...), no folding/centring); "
        "from_pretrained itself refuses: SmolLM2 is not in TL's official model list",
        "note": "deprecated in TL 3.x; its attention is TL's own einsum code, not SDPA; return_type=None skips the "
        "unembedding",
    }
    methods = [
        Method("tl_hooked_all", "TL HookedTransformer run_with_cache, 30 layers", make(layers, None), layers=layers),
        Method("tl_hooked_mid", f"TL HookedTransformer run_with_cache, layer {mid}", make([mid], mid), layers=[mid]),
    ]
    return methods, info


def nnsight_methods(backend: Any, layers: list[int], mid: int) -> tuple[list[Method], dict[str, Any]]:
    """nnsight's generic ``NNsight`` wrapper around a second copy of the HF model."""
    import nnsight
    from nnsight import NNsight

    wrapped = NNsight(load_hf_copy())

    def make(wanted: list[int]) -> Callable[[Sequence[str]], Pooled]:
        deepest = max(wanted)

        def run(texts: Sequence[str]) -> Pooled:
            out = {layer: np.zeros((len(texts), backend.hidden_size), dtype=np.float32) for layer in wanted}
            with torch.inference_mode():
                for batch, ids, mask in batches(backend, encode(backend, texts)):
                    rows, last = torch.arange(ids.shape[0]), mask.sum(dim=1) - 1
                    saved: dict[int, Any] = {}
                    with wrapped.trace(input_ids=ids, attention_mask=mask, use_cache=False) as tracer:
                        for layer in wanted:
                            h = wrapped.model.layers[layer - 1].output
                            h = h[0] if isinstance(h, tuple) else h
                            saved[layer] = h[rows, last].save()
                            if layer == deepest:
                                tracer.stop()  # skip the remaining layers, as ours does
                    for layer in wanted:
                        out[layer][batch] = saved[layer].float().cpu().numpy()
            return out

        return run

    info = {
        "status": "ok",
        "version": nnsight.__version__,
        "how": "NNsight(<HF model>).trace(input_ids=ids, attention_mask=mask, use_cache=False): "
        "model.layers[L-1].output[rows, last].save() per layer, tracer.stop() after the deepest",
    }
    methods = [
        Method("nnsight_all", "nnsight trace, 30 layers", make(layers), layers=layers),
        Method("nnsight_mid", f"nnsight trace, layer {mid}", make([mid]), layers=[mid]),
    ]
    return methods, info


def external_methods(
    backend: Any, layers: list[int], mid: int, enabled: bool
) -> tuple[list[Method], dict[str, dict[str, Any]]]:
    """Every external library that loads offline; a library that does not is reported with the reason."""
    methods: list[Method] = []
    status: dict[str, dict[str, Any]] = {}
    builders = {
        "transformer_lens_bridge": tl_bridge_methods,
        "transformer_lens_hooked": tl_hooked_methods,
        "nnsight": nnsight_methods,
    }
    for name, build in builders.items():
        if not enabled:
            status[name] = {"status": "skipped", "reason": "--no-external"}
            continue
        try:
            found, info = build(backend, layers, mid)
        except ImportError as exc:
            status[name] = {"status": "not installed", "reason": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: not installed ({exc})")
            continue
        except Exception as exc:  # any failure to load offline is a result worth recording
            status[name] = {"status": "failed to load", "reason": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: could not be loaded ({type(exc).__name__}: {exc})")
            continue
        methods += found
        status[name] = info
    return methods, status


# ------------------------------------------------------------------------------------------- checks
def reference_states(backend: Any, texts: Sequence[str], layers: Sequence[int]) -> Pooled:
    """Last-token states from ``output_hidden_states=True``, one unpadded text at a time.

    ``hidden_states[L]`` is block L's output for L < n_layers; the last entry has the final norm
    applied, so the top layer is left out of this check.
    """
    out = {layer: np.zeros((len(texts), backend.hidden_size), dtype=np.float32) for layer in layers}
    with torch.inference_mode():
        for i, ids in enumerate(encode(backend, texts)):
            hs = backend.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            for layer in layers:
                out[layer][i] = hs[layer][0, -1].float().numpy()
    return out


def compare(got: Pooled, ref: Pooled) -> dict[str, Any]:
    """Largest |got - ref| over the shared layers, absolute and relative to max |ref| of that layer."""
    shared = sorted(set(got) & set(ref))
    abs_diff = max(float(np.max(np.abs(got[layer] - ref[layer]))) for layer in shared)
    rel_diff = max(float(np.max(np.abs(got[layer] - ref[layer])) / np.max(np.abs(ref[layer]))) for layer in shared)
    return {
        "layers_checked": shared,
        "max_abs_diff": abs_diff,
        "max_rel_diff": rel_diff,
        "ok": rel_diff < REL_TOLERANCE,
    }


def token_states_as_last(backend: Any, texts: Sequence[str], chunks: list[Any], layer: int) -> Pooled:
    """Each text's last-token row out of per-token states, for the check against pooled states."""
    encoded = encode(backend, texts)
    out = {layer: np.full((len(texts), backend.hidden_size), np.nan, dtype=np.float32)}
    for chunk in chunks:
        last = np.array([len(encoded[t]) - 1 for t in chunk.text_index])
        rows = np.nonzero(chunk.position == last)[0]
        out[layer][chunk.text_index[rows]] = chunk.values[layer][rows]
    return out


# --------------------------------------------------------------------------------------------- main
def run_rounds(
    methods: list[Method], texts: Sequence[str], plan: list[np.ndarray], repeats: int
) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    """Seconds per method as (repeats, n_batches), and each method's output for every batch.

    A whole pass takes minutes, and on a shared machine the load of other processes changes on that
    scale (it swung 3x within one trial run), so whole-pass rounds compare methods under different
    loads. Methods are therefore interleaved batch by batch: each runs the texts of one planner batch
    (which the planner keeps as one batch) back to back with the others, the order rotating with the
    batch and the round; a method's time is the sum over batches of its median round (see ``summarise``).
    """
    groups: dict[str, list[Method]] = {}
    for m in methods:
        groups.setdefault(m.group or m.key, []).append(m)
    order = list(groups.values())
    seconds = {m.key: np.zeros((repeats, len(plan))) for m in methods}
    outputs: dict[str, list[Any]] = {m.key: [None] * len(plan) for m in methods}
    for r in range(repeats):
        for b, idx in enumerate(plan):
            subset = [texts[i] for i in idx]
            shift = (r + b) % len(order)
            for group in order[shift:] + order[:shift]:
                for m in group:
                    gc.collect()
                    start = time.perf_counter()
                    outputs[m.key][b] = m.run(subset)
                    seconds[m.key][r, b] = time.perf_counter() - start
            took = " ".join(f"{m.key}={seconds[m.key][r, b]:.1f}" for m in methods)
            print(f"  round {r + 1} batch {b + 1}/{len(plan)} ({len(idx)} texts) [s]: {took}", flush=True)
    return seconds, outputs


def summarise(raw: dict[str, dict[str, Any]], n_tokens: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Table rows and the hook-overhead verdict from raw timings.

    ``raw[key]`` holds ``label``, ``layers``, ``check`` and ``seconds_per_round_and_batch`` (rounds x
    batches). The headline time of a method is, per batch, the median over rounds, summed over batches:
    on a shared machine the fastest round is not a safe summary, because a rare quiet moment flatters
    whichever method happened to run in it (one batch of the plain forward once took 5 s instead of 13 s).
    The fastest-round figures are kept alongside.
    """
    plain = np.asarray(raw["plain"]["seconds_per_round_and_batch"])
    plain_med, plain_min = np.median(plain, axis=0), plain.min(axis=0)
    rows: dict[str, dict[str, Any]] = {}
    for key, r in raw.items():
        sec = np.asarray(r["seconds_per_round_and_batch"])
        med, low = np.median(sec, axis=0), sec.min(axis=0)
        rows[key] = {
            "label": r["label"],
            "layers": r["layers"],
            "seconds": float(med.sum()),
            "seconds_per_batch_median": med.tolist(),
            "seconds_fastest": float(low.sum()),
            "seconds_per_batch_fastest": low.tolist(),
            "seconds_per_round": sec.sum(axis=1).tolist(),
            "seconds_per_round_and_batch": sec.tolist(),
            "tokens_per_s": n_tokens / float(med.sum()),
            "tokens_per_s_fastest": n_tokens / float(low.sum()),
            "speed_vs_plain": float(plain_med.sum() / med.sum()),
            "overhead_vs_plain": float(med.sum() / plain_med.sum() - 1),
            "overhead_vs_plain_per_batch": (med / plain_med - 1).tolist(),
            "overhead_vs_plain_fastest": float(low.sum() / plain_min.sum() - 1),
            "overhead_vs_plain_median_same_round": float(np.median(sec.sum(axis=1) / plain.sum(axis=1)) - 1),
            "check": r["check"],
        }
    ours_all = rows["ours_all"]
    target = {
        "what": "ours (hooks on all 30 layers, pooling, copies) time / plain body forward time - 1, per-batch "
        "medians over rounds summed over batches",
        "target": HOOK_OVERHEAD_TARGET,
        "value": ours_all["overhead_vs_plain"],
        "value_per_batch": ours_all["overhead_vs_plain_per_batch"],
        "value_fastest_rounds": ours_all["overhead_vs_plain_fastest"],
        "value_median_same_round": ours_all["overhead_vs_plain_median_same_round"],
        "met": ours_all["overhead_vs_plain"] <= HOOK_OVERHEAD_TARGET,
    }
    return rows, target


def print_target(target: dict[str, Any]) -> None:
    print(
        f"hook overhead (ours 30 layers vs plain forward): {target['value']:+.1%} "
        f"(per batch {', '.join(f'{v:+.1%}' for v in target['value_per_batch'])}; fastest rounds "
        f"{target['value_fastest_rounds']:+.1%}; median of same-round ratios {target['value_median_same_round']:+.1%})"
        f"; target <= {HOOK_OVERHEAD_TARGET:.0%} -> {'MET' if target['met'] else 'NOT MET'}"
    )


def resummarise(path: Path, out: Path, argv: Sequence[str]) -> int:
    """Recompute the summary of a stored report from its raw per-round, per-batch timings (no model run)."""
    report = json.loads(path.read_text(encoding="utf-8"))
    rows, target = summarise(report["methods"], report["workload"]["n_tokens"])
    print_table(rows, report["workload"]["n_tokens"])
    print_target(target)
    report["methods"], report["hook_overhead_target"] = rows, target
    report["notes"] = NOTES
    report["summarised_by"] = "python benchmarks/bench_activations.py " + " ".join(argv)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def print_table(rows: dict[str, dict[str, Any]], n_tokens: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Activation extraction, default model, {n_tokens:,} tokens (median round per batch)")
    for col in ("method", "time s", "tok/s", "x plain", "overhead", "max rel |Δ|", "check"):
        table.add_column(col, justify="left" if col in ("method", "check") else "right")
    for r in rows.values():
        check = r.get("check")
        table.add_row(
            r["label"],
            f"{r['seconds']:.2f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['speed_vs_plain']:.2f}",
            f"{r['overhead_vs_plain']:+.1%}",
            "—" if check is None else f"{check['max_rel_diff']:.1e}",
            "reference" if check is None else ("ok" if check["ok"] else "MISMATCH"),
        )
    Console(width=130).print(table)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", type=int, default=256, help="concept template sentences")
    parser.add_argument("--passages", type=int, default=32, help="BoolQ passages (skipped when the data is absent)")
    parser.add_argument("--layer", type=int, default=15, help="the single middle layer")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (methods interleaved per batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-external", action="store_true", help="skip TransformerLens and nnsight")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument(
        "--summarise", type=Path, default=None, metavar="JSON", help="only recompute the summary of a stored report"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.templates, args.passages, args.repeats = 24, 8, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarise is not None:
        return resummarise(args.summarise, args.out, sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from biasaudit.backend.hf import HFBackend

    info = machine_info()
    backend = HFBackend.from_spec("default", progress=False)
    n_params = sum(p.numel() for p in backend.model.parameters())
    all_layers = list(range(1, backend.n_layers + 1))
    mid = args.layer
    texts, sources = build_texts(args.templates, args.passages, args.seed, args.data_dir)
    encoded = encode(backend, texts)
    lengths = [len(e) for e in encoded]
    n_tokens = sum(lengths)
    plan = [batch for batch, _ in backend.planner.map(lengths, lambda b: None)]
    shapes = [(len(batch), max(lengths[i] for i in batch)) for batch in plan]
    padded = sum(rows * width for rows, width in shapes)
    for batch in plan:  # each batch's texts alone must make that same batch again
        assert len(list(backend.planner.map([lengths[i] for i in batch], lambda b: None))) == 1
    print(
        f"{backend.name}: {n_params / 1e6:.1f}M params, {backend.n_layers} layers; {info['cpu_count']} CPUs, "
        f"{info['torch_threads']} threads\n{len(texts)} texts, {n_tokens:,} tokens (min {min(lengths)}, "
        f"median {int(np.median(lengths))}, max {max(lengths)}), {len(plan)} batches {shapes} (rows x width), "
        f"{padded:,} padded tokens ({padded / n_tokens - 1:.1%} padding)",
        flush=True,
    )

    scratch = tempfile.TemporaryDirectory(prefix="bench-activations-")
    store = StoreRuns(backend, all_layers, Path(scratch.name))
    methods = [
        Method("plain", "plain forward (body, all 30 layers)", plain_forward(backend), layers=all_layers),
        Method("ours_all", "ours iter_hidden_states, 30 layers", ours(backend, all_layers), layers=all_layers),
        Method("ours_mid", f"ours iter_hidden_states, layer {mid}", ours(backend, [mid]), layers=[mid]),
        Method("store_cold", "ActivationStore cold, 30 layers", store.cold, group="store", layers=all_layers),
        Method("store_warm_disk", "ActivationStore warm (new store)", store.warm_disk, "store", all_layers),
        Method("store_warm_memory", "ActivationStore warm (in memory)", store.warm_memory, "store", all_layers),
        Method("token_states", f"ours iter_token_states, layer {mid}", token_states(backend, mid), layers=[mid]),
    ]
    external, external_status = external_methods(backend, all_layers, mid, enabled=not args.no_external)
    methods += external

    # Warm-up on a few texts (one-off initialisation, the model fingerprint the store keys on).
    warm_texts = texts[:8]
    for m in methods:
        m.run(warm_texts)

    print(f"\nchecking ours against output_hidden_states on {N_REFERENCE_TEXTS} unpadded texts", flush=True)
    ref_layers = all_layers[:-1]  # the model's last hidden state has the final norm applied
    reference_check = compare(
        ours(backend, ref_layers)(texts[:N_REFERENCE_TEXTS]),
        reference_states(backend, texts[:N_REFERENCE_TEXTS], ref_layers),
    )
    print(f"  max rel |Δ| {reference_check['max_rel_diff']:.1e} -> {'ok' if reference_check['ok'] else 'MISMATCH'}")

    print(f"\ntiming {len(methods)} methods x {args.repeats} rounds, interleaved batch by batch", flush=True)
    load_start = os.getloadavg()[0]
    seconds, outputs = run_rounds(methods, texts, plan, args.repeats)
    load_end = os.getloadavg()[0]
    scratch.cleanup()

    checks: dict[str, dict[str, Any] | None] = {"plain": None}
    for m in methods:
        if m.key in ("plain", "ours_all"):
            continue
        per_batch = []
        for b, idx in enumerate(plan):
            got = outputs[m.key][b]
            if m.key == "token_states":
                got = token_states_as_last(backend, [texts[i] for i in idx], got, mid)
            per_batch.append(compare(got, outputs["ours_all"][b]))
        worst = max(per_batch, key=lambda c: c["max_rel_diff"])
        checks[m.key] = {**worst, "max_abs_diff": max(c["max_abs_diff"] for c in per_batch)}
    checks["ours_all"] = {**reference_check, "against": "output_hidden_states (unbatched, unpadded)"}

    raw = {
        m.key: {
            "label": m.label,
            "layers": m.layers,
            "check": checks.get(m.key),
            "seconds_per_round_and_batch": seconds[m.key].tolist(),
        }
        for m in methods
    }
    rows, target = summarise(raw, n_tokens)
    print()
    print_table(rows, n_tokens)
    print_target(target)
    for name, status in external_status.items():
        if status["status"] != "ok":
            print(f"{name}: {status['status']} ({status.get('reason', '')})")

    info["load_average_end"] = list(os.getloadavg())
    report = {
        "benchmark": "activations",
        "command": "python benchmarks/bench_activations.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": backend.name,
        "n_params": n_params,
        "n_layers": backend.n_layers,
        "hidden_size": backend.hidden_size,
        "dtype": str(next(backend.model.parameters()).dtype),
        "attn_implementation": backend.model.config._attn_implementation,
        "machine": info,
        "config": {
            "templates": args.templates,
            "passages": args.passages,
            "middle_layer": mid,
            "repeats": args.repeats,
            "seed": args.seed,
            "max_batch_tokens": backend.planner.max_batch_tokens,
            "pooling": "last",
            "rel_tolerance": REL_TOLERANCE,
            "quick": args.quick,
        },
        "workload": {
            "n_texts": len(texts),
            "n_tokens": n_tokens,
            "padded_tokens": padded,
            "n_batches": len(plan),
            "batch_shapes_rows_x_width": shapes,
            "tokens_per_text": {
                "min": min(lengths),
                "median": float(np.median(lengths)),
                "mean": float(np.mean(lengths)),
                "max": max(lengths),
            },
            "sources": sources,
        },
        "load_average_1min": {"start_of_timing": load_start, "end_of_timing": load_end},
        "methods": rows,
        "hook_overhead_target": target,
        "external": external_status,
        "notes": NOTES,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
