"""How to train one TopK SAE: the configuration, apart from the training code so that the data
extraction (``sae_data``) and the trainer (``sae_train``) both read it without importing each other."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from biasaudit.concepts.sae import SAETrainingError
from biasaudit.jsonio import dataclass_from_dict


@dataclass
class SAETrainingConfig:
    """How to train one TopK SAE. ``None`` fields are filled by ``resolved`` (the saved config has values).

    layer: biasaudit layer (0 = embeddings, l = output of block l).  d_sae: latents (None:
    ``expansion_factor`` x hidden size).  k: active latents per token.  total_tokens: training samples
    (token passes, over several epochs when larger than the extracted set).  extract_tokens: distinct
    tokens read from the model, held-out ones included.  batch_size_tokens: tokens per step.
    lr, lr_end (None: lr / 10), lr_scheduler ("constant" or "cosineannealing"), lr_warmup_steps (None:
    5% of the steps), lr_decay_steps (None: the last 20%, linear to 0).  aux_loss_coefficient: AuxK
    weight.  dead_feature_window: steps without firing before a latent counts as dead for AuxK (None:
    a tenth of the run, 50..1000).  max_norm_factor: drop tokens whose norm exceeds this x the median
    (None keeps all).  skip_positions: first tokens of each text left out.  max_seq_len: positions at or
    beyond it are left out.  eval_fraction: texts held out for evaluation.  seed.  checkpoint_every:
    steps between checkpoints.  device: where the SAE trains.
    """

    layer: int
    d_sae: int | None = None
    expansion_factor: int = 4
    k: int = 32
    total_tokens: int = 600_000
    extract_tokens: int = 100_000
    batch_size_tokens: int = 1024
    lr: float = 2e-3
    lr_end: float | None = None
    lr_scheduler: str = "constant"
    lr_warmup_steps: int | None = None
    lr_decay_steps: int | None = None
    aux_loss_coefficient: float = 1 / 32
    dead_feature_window: int | None = None
    max_norm_factor: float | None = 3.0
    skip_positions: int = 1
    max_seq_len: int = 256
    eval_fraction: float = 0.1
    seed: int = 0
    checkpoint_every: int = 200
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAETrainingConfig:
        return dataclass_from_dict(cls, data, "SAE training config")

    @property
    def total_steps(self) -> int:
        return self.total_tokens // self.batch_size_tokens

    def resolved(self, hidden_size: int) -> SAETrainingConfig:
        """A copy with every ``None`` default filled in for a model of width ``hidden_size``, validated."""
        c = dataclasses.replace(self)
        c.d_sae = c.d_sae or c.expansion_factor * hidden_size
        checks = {
            "layer": c.layer >= 0,
            "k": 1 <= c.k <= c.d_sae,
            "batch_size_tokens": c.batch_size_tokens >= 1,
            "total_tokens": c.total_tokens >= c.batch_size_tokens,
            "extract_tokens": c.extract_tokens >= 1,
            "lr": c.lr > 0,
            "eval_fraction": 0 < c.eval_fraction < 1,
            "skip_positions": c.skip_positions >= 0,
            "max_seq_len": c.max_seq_len > c.skip_positions,
            "max_norm_factor": c.max_norm_factor is None or c.max_norm_factor > 1,
            "checkpoint_every": c.checkpoint_every >= 1,
            "lr_scheduler": c.lr_scheduler in ("constant", "cosineannealing"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise SAETrainingError(f"invalid SAE training config: {', '.join(f'{b}={getattr(c, b)!r}' for b in bad)}")
        steps = c.total_steps
        c.lr_end = c.lr / 10 if c.lr_end is None else c.lr_end
        c.lr_warmup_steps = round(0.05 * steps) if c.lr_warmup_steps is None else c.lr_warmup_steps
        c.lr_decay_steps = round(0.2 * steps) if c.lr_decay_steps is None else c.lr_decay_steps
        if c.lr_warmup_steps + c.lr_decay_steps >= steps:
            raise SAETrainingError(f"lr warm-up + decay ({c.lr_warmup_steps} + {c.lr_decay_steps}) >= {steps} steps")
        if c.dead_feature_window is None:
            c.dead_feature_window = min(1000, max(50, steps // 10))
        return c
