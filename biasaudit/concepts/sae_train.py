"""Train a TopK sparse autoencoder (sae-lens) on one layer of a backend's residual stream, on the CPU.

Pipeline: stream per-token activations from ``backend.iter_token_states`` once (skipping the first
``skip_positions`` tokens of each text, capping positions at ``max_seq_len``), hold out whole texts for
evaluation, drop massive-norm tokens, then cycle epochs over the in-memory activations in a fresh random
order per epoch, feeding full batches to sae-lens's ``SAETrainer`` (Adam, lr schedule, dead-latent
tracking, AuxK loss) one step at a time.

Why these choices (lessons from a probe on SmolLM2-135M):

* Position 0 (attention sink) and a few massive-norm tokens carry most of the variance of the residual
  stream; left in, they dominate the MSE and explained variance means little. They are skipped/dropped.
* TopK SAEs (Gao et al. 2024, "Scaling and evaluating sparse autoencoders") with the AuxK loss: dead
  latents are asked to reconstruct the live latents' residual, which revives them. sae-lens counts a
  latent dead after ``dead_feature_window`` *steps* without firing, so short runs need a short window
  or AuxK never starts.
* ``b_dec`` starts at the data mean (the paper uses the geometric median); inputs are scaled to mean
  norm sqrt(d_in) (sae-lens's ``expected_average_only_in``) with the factor computed from the data we
  already hold, then folded into the weights on export, so the saved SAE takes raw activations.
* Several epochs over the same tokens are cheaper than extracting more: on a CPU the model's forward
  pass costs about as much per token as an SAE step.

The output folder is an sae-lens SAE (``SAE.load_from_disk(out_dir)``) plus ``training_config.json``
and ``training_report.json``. Training is resumable: ``checkpoint/`` (sae-lens trainer state) and
``activations/`` (the extracted tokens) live in the folder until the run finishes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biasaudit.concepts.sae import SAETrainingError, layer_to_hook
from biasaudit.concepts.sae_config import SAETrainingConfig
from biasaudit.concepts.sae_data import (
    _Activations,
    _corpus_digest,
    _load_activations,
    _save_activations,
    extract_activations,
)
from biasaudit.jsonio import read_json, write_json_atomic
from biasaudit.progress import progress_bar

CONFIG_FILE = "training_config.json"
REPORT_FILE = "training_report.json"
CHECKPOINT_DIR = "checkpoint"
ACTIVATIONS_DIR = "activations"
PROGRESS_FILE = "progress.json"
# Files of ours in the output folder: removed by a fresh (resume=False) run, nothing else is touched.
_OWNED = ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", CONFIG_FILE, REPORT_FILE)
_OWNED_DIRS = (CHECKPOINT_DIR, ACTIVATIONS_DIR, f".{CHECKPOINT_DIR}.tmp", f".{CHECKPOINT_DIR}.old", ".final.tmp")
# Fields that change neither the data nor the optimisation: a run may resume with other values.
_RESUME_FREE = ("device", "checkpoint_every")
# Fields that decide which tokens are extracted (the activation cache is valid while they match).
_DATA_FIELDS = ("layer", "extract_tokens", "skip_positions", "max_seq_len", "eval_fraction", "max_norm_factor", "seed")


@dataclass(frozen=True)
class SAETrainingReport:
    """What a finished run measured. Metrics are on held-out tokens (texts never trained on).

    explained_variance: 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over held-out tokens.  l0: mean active
    latents per token.  dead_fraction: latents that never fire on the held-out tokens.
    train_dead_fraction: latents dead by the trainer's window at the end.  dropped_fraction: tokens
    dropped for a norm above ``norm_threshold``.  tokens_seen: training samples (token passes);
    epochs = tokens_seen / n_train_tokens.  wall_time_s: extraction + training + export, summed over
    resumed sessions.  history: held-out metrics at each checkpoint.
    """

    out_dir: str
    model_name: str
    model_fingerprint: str
    layer: int
    hook_name: str
    d_in: int
    d_sae: int
    k: int
    explained_variance: float
    l0: float
    dead_fraction: float
    train_dead_fraction: float
    n_train_tokens: int
    n_eval_tokens: int
    n_texts: int
    dropped_fraction: float
    norm_threshold: float | None
    tokens_seen: int
    steps: int
    epochs: float
    extract_time_s: float
    train_time_s: float
    wall_time_s: float
    resumed_from_step: int
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAETrainingReport:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


# ---------------------------------------------------------------------------------------- training
class _EpochBatches:
    """Endless full batches: batch i of epoch e is rows perm_e[i*B:(i+1)*B], perm_e seeded by (seed, e).

    Batch ``step`` is a pure function of ``step``, so a resumed run sees exactly the batches the
    uninterrupted run would have seen. The tail of each epoch's permutation is skipped (a different
    tail every epoch).
    """

    def __init__(self, data: np.ndarray, batch_size: int, seed: int, step: int = 0) -> None:
        self.data, self.batch_size, self.seed, self.step = data, batch_size, seed, step
        self.per_epoch = len(data) // batch_size
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def __iter__(self) -> _EpochBatches:
        return self

    def __next__(self) -> torch.Tensor:
        epoch, i = divmod(self.step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, 2, epoch]).permutation(len(self.data))
        rows = np.sort(self._perm[i * self.batch_size : (i + 1) * self.batch_size])
        self.step += 1
        return torch.from_numpy(self.data[rows].astype(np.float32))


@torch.no_grad()
def _evaluate(sae: Any, x: np.ndarray, scale: float, batch_size: int = 4096) -> dict[str, Any]:
    """Explained variance, L0 and per-latent firing counts of ``sae`` on ``x`` (n, d) times ``scale``."""
    was_training = sae.training
    sae.eval()
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32)) * scale
    mean = xt.mean(dim=0)
    sse = sst = 0.0
    active = 0.0
    fired = torch.zeros(int(sae.cfg.d_sae), dtype=torch.int64)
    for start in range(0, len(xt), batch_size):
        chunk = xt[start : start + batch_size].to(sae.device)
        z = sae.encode(chunk)
        recon = sae.decode(z)
        sse += float((recon - chunk).pow(2).sum())
        sst += float((chunk - mean.to(chunk.device)).pow(2).sum())
        on = z > 0
        active += float(on.sum())
        fired += on.sum(dim=0).cpu()
    sae.train(was_training)
    return {
        "explained_variance": 1.0 - sse / max(sst, 1e-30),
        "l0": active / max(len(xt), 1),
        "dead_fraction": float((fired == 0).float().mean()),
        "fire_counts": fired,
    }


def _build_trainer(c: SAETrainingConfig, d_in: int, data: _Activations, metadata: dict[str, Any]) -> Any:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    assert c.d_sae is not None and c.dead_feature_window is not None
    torch.manual_seed(c.seed)
    sae_cfg = TopKTrainingSAEConfig(
        d_in=d_in,
        d_sae=c.d_sae,
        k=c.k,
        device=c.device,
        # The scaler lives in the trainer (preset below); the checkpoint's cfg says so, and export folds it.
        normalize_activations="expected_average_only_in",
        aux_loss_coefficient=c.aux_loss_coefficient,
        metadata=SAEMetadata(**metadata),
    )
    sae = TopKTrainingSAE(sae_cfg)
    train = data.train
    # Mean norm and mean from a sample: exact enough, and no float32 copy of the whole set.
    sample = train[np.random.default_rng([c.seed, 3]).choice(len(train), min(len(train), 50_000), replace=False)]
    sample = sample.astype(np.float32)
    scale = math.sqrt(d_in) / float(np.linalg.norm(sample, axis=1).mean())
    with torch.no_grad():
        sae.b_dec.copy_(torch.from_numpy(sample.mean(axis=0) * scale))
    assert c.lr_end is not None and c.lr_warmup_steps is not None and c.lr_decay_steps is not None
    trainer_cfg = SAETrainerConfig(
        total_training_samples=c.total_steps * c.batch_size_tokens,
        train_batch_size_samples=c.batch_size_tokens,
        lr=c.lr,
        lr_end=c.lr_end,
        lr_scheduler_name=c.lr_scheduler,
        lr_warm_up_steps=c.lr_warmup_steps,
        lr_decay_steps=c.lr_decay_steps,
        device=c.device,
        dead_feature_window=c.dead_feature_window,
        feature_sampling_window=c.dead_feature_window,
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=0,
    )
    batches = _EpochBatches(train, c.batch_size_tokens, c.seed)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches)
    trainer.activation_scaler.scaling_factor = scale
    return trainer


def _save_checkpoint(trainer: Any, out_dir: Path, progress: dict[str, Any]) -> None:
    """sae-lens checkpoint (weights, trainer state, scaler) + our progress, swapped in atomically."""
    tmp, final, old = (out_dir / f".{CHECKPOINT_DIR}.tmp", out_dir / CHECKPOINT_DIR, out_dir / f".{CHECKPOINT_DIR}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_checkpoint(checkpoint_name=tmp.name, base_path=out_dir)
    write_json_atomic(tmp / PROGRESS_FILE, progress)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _latest_checkpoint(out_dir: Path) -> Path | None:
    for name in (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.old"):  # .old survives a crash mid-swap
        path = out_dir / name
        if (path / PROGRESS_FILE).is_file():
            return path
    return None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RESUME_FREE}


def _clear(out_dir: Path) -> None:
    for name in _OWNED:
        (out_dir / name).unlink(missing_ok=True)
    for name in _OWNED_DIRS:
        shutil.rmtree(out_dir / name, ignore_errors=True)


def train_sae(
    backend: Any,
    texts: Iterable[str] | Sequence[str],
    config: SAETrainingConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> SAETrainingReport:
    """Train a TopK SAE on ``config.layer`` of ``backend`` over ``texts``; write it to ``out_dir``.

    ``resume=True``: a finished run with the same config is returned as is; an unfinished one continues
    from its last checkpoint (same config and model required; ``device`` and ``checkpoint_every`` may
    differ). ``resume=False`` deletes the files of an earlier run in ``out_dir`` first.
    ``on_step(step)`` is called after every optimiser step (after any checkpoint).
    """
    session_start = time.perf_counter()
    out_dir = Path(out_dir)
    c = config.resolved(backend.hidden_size)
    if c.layer > backend.n_layers:
        raise SAETrainingError(f"layer {c.layer} is out of range: {backend.name} has layers 0 to {backend.n_layers}")
    fingerprint = str(getattr(backend, "fingerprint", ""))
    run_id = {"config": _comparable(c.to_dict()), "model_fingerprint": fingerprint}
    digest = _corpus_digest(texts)

    if not resume:
        _clear(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = read_json(out_dir / CONFIG_FILE)
    if previous is not None:
        before = {
            "config": _comparable(previous.get("config", {})),
            "model_fingerprint": previous.get("model_fingerprint"),
        }
        if before != run_id:
            raise SAETrainingError(
                f"{out_dir} holds an SAE run with another config or model; pass resume=False (--no-resume) to "
                "overwrite it, or choose another output folder"
            )
        if digest and previous.get("corpus_sha256") not in (None, digest):
            raise SAETrainingError(
                f"{out_dir} holds an SAE run on another corpus; pass resume=False (--no-resume) or another folder"
            )
    report = read_json(out_dir / REPORT_FILE)
    checkpoint = _latest_checkpoint(out_dir)
    if report is not None and (out_dir / "cfg.json").is_file():
        return SAETrainingReport.from_dict(report)
    write_json_atomic(
        out_dir / CONFIG_FILE,
        {"config": c.to_dict(), "model_name": backend.name, "model_fingerprint": fingerprint, "corpus_sha256": digest},
    )

    data_meta = {"fields": {k: getattr(c, k) for k in _DATA_FIELDS}, "model_fingerprint": fingerprint}
    acts = _load_activations(out_dir / ACTIVATIONS_DIR, data_meta)
    if acts is None:
        acts = extract_activations(backend, texts, c, progress=progress)
        _save_activations(out_dir / ACTIVATIONS_DIR, acts, data_meta)

    hook_name = layer_to_hook(c.layer)
    metadata = {
        "model_name": backend.name,
        "hook_name": hook_name,
        "model_fingerprint": fingerprint,
        "biasaudit_layer": c.layer,
        "context_size": c.max_seq_len,
        "seqpos_slice": [c.skip_positions, None],
    }
    trainer = _build_trainer(c, backend.hidden_size, acts, metadata)
    sae = trainer.sae
    history: list[dict[str, float]] = []
    elapsed_before = 0.0
    train_time_before = 0.0
    resumed_from = 0
    if checkpoint is not None:
        state = read_json(checkpoint / PROGRESS_FILE) or {}
        sae.load_weights_from_checkpoint(checkpoint)
        trainer.load_trainer_state(checkpoint)
        history = list(state.get("history", []))
        elapsed_before = float(state.get("wall_time_s", 0.0))
        train_time_before = float(state.get("train_time_s", 0.0))
        resumed_from = trainer.n_training_steps
    scale = float(trainer.activation_scaler.scaling_factor)
    batches: _EpochBatches = trainer.data_provider
    batches.step = trainer.n_training_steps

    def snapshot() -> dict[str, float]:
        metrics = _evaluate(sae, acts.eval, scale)
        return {
            "step": trainer.n_training_steps,
            "tokens": trainer.n_training_samples,
            "explained_variance": metrics["explained_variance"],
            "l0": metrics["l0"],
            "dead_fraction": metrics["dead_fraction"],
            "train_dead_fraction": float(trainer.dead_neurons.float().mean()),
        }

    train_start = time.perf_counter()
    total_steps = c.total_steps
    with progress_bar("training SAE", total_steps, enabled=progress) as advance:
        advance(trainer.n_training_steps)
        while trainer.n_training_steps < total_steps:
            trainer.maybe_reset_sparsity()
            trainer.step(next(batches))
            trainer.n_training_steps += 1
            advance(1)
            step = trainer.n_training_steps
            if step % c.checkpoint_every == 0 and step < total_steps:
                history.append(snapshot())
                now = time.perf_counter()
                _save_checkpoint(
                    trainer,
                    out_dir,
                    {
                        "step": step,
                        "history": history,
                        "wall_time_s": elapsed_before + now - session_start,
                        "train_time_s": train_time_before + now - train_start,
                    },
                )
            if on_step is not None:
                on_step(step)
    train_time = train_time_before + time.perf_counter() - train_start

    # Export: fold the input scaling into a copy (which then takes raw activations) and measure that copy.
    export = copy.deepcopy(sae)
    export.fold_activation_norm_scaling_factor(scale)
    final = _evaluate(export, acts.eval, 1.0)
    history.append(snapshot())
    report_obj = SAETrainingReport(
        out_dir=str(out_dir),
        model_name=backend.name,
        model_fingerprint=fingerprint,
        layer=c.layer,
        hook_name=hook_name,
        d_in=backend.hidden_size,
        d_sae=int(c.d_sae or 0),
        k=c.k,
        explained_variance=float(final["explained_variance"]),
        l0=float(final["l0"]),
        dead_fraction=float(final["dead_fraction"]),
        train_dead_fraction=float(trainer.dead_neurons.float().mean()),
        n_train_tokens=len(acts.train),
        n_eval_tokens=len(acts.eval),
        n_texts=int(acts.stats["n_texts"]),
        dropped_fraction=float(acts.stats["dropped_fraction"]),
        norm_threshold=acts.stats["norm_threshold"],
        tokens_seen=int(trainer.n_training_samples),
        steps=int(trainer.n_training_steps),
        epochs=trainer.n_training_samples / len(acts.train),
        extract_time_s=float(acts.stats["extract_time_s"]),
        train_time_s=train_time,
        wall_time_s=0.0,  # set below, once the files are written
        resumed_from_step=resumed_from,
        history=history,
    )
    for key in ("explained_variance", "l0", "dead_fraction"):
        export.cfg.metadata[key] = getattr(report_obj, key)
    _write_final(export, final["fire_counts"], len(acts.eval), out_dir)
    wall = elapsed_before + time.perf_counter() - session_start
    report_obj = dataclasses.replace(report_obj, wall_time_s=wall)
    write_json_atomic(out_dir / REPORT_FILE, report_obj.to_dict())
    for name in (CHECKPOINT_DIR, ACTIVATIONS_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    return report_obj


def _write_final(export: Any, fire_counts: torch.Tensor, n_eval: int, out_dir: Path) -> None:
    """sae-lens inference files (cfg.json, weights, log10 firing frequency) into ``out_dir``, each atomically."""
    from safetensors.torch import save_file

    tmp = out_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    export.save_inference_model(tmp)
    sparsity = torch.log10(fire_counts.float() / max(n_eval, 1) + 1e-10)
    save_file({"sparsity": sparsity}, tmp / "sparsity.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("sae_weights.safetensors", "sparsity.safetensors", "cfg.json"):  # cfg.json last: it marks a whole SAE
        os.chmod(tmp / name, 0o666 & ~umask)  # safetensors writes private files; an SAE is meant to be shared
        os.replace(tmp / name, out_dir / name)
    shutil.rmtree(tmp, ignore_errors=True)
