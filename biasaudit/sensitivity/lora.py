"""Plant a bias of known dose: a LoRA adapter (peft) trained on a planting corpus, saved for ``peft=DIR``.

Every dose gets the same corpus size, steps, learning rate and seed schedule, so doses differ only in
which side the completions take; the loss is on the completion tokens only (the prompt is context).
The adapter is saved with ``save_pretrained`` (safetensors) beside ``planting.json``, and every suite
and command audits the planted model through ``--model_args peft=DIR``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from biasaudit.errors import InvalidRequestError
from biasaudit.progress import progress_bar
from biasaudit.sensitivity.corpus import PLANTINGS, PlantingExample

# Attention and MLP projections of Llama-style blocks (SmolLM2, Llama, Mistral, Qwen2 ...).
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class PlantingConfig:
    """What one adapter is trained on and how (round-trips to ``planting.json``)."""

    planting: str
    dose: float
    seed: int = 0
    n_sentences: int = 512  # fully planted on the default model; ~1 min of training on 2 CPU cores
    rank: int = 8
    alpha: int = 16
    learning_rate: float = 5e-4
    batch_size: int = 16
    epochs: int = 1
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))

    def validate(self) -> None:
        if self.planting not in PLANTINGS:
            raise InvalidRequestError(f"planting must be one of {list(PLANTINGS)}, not {self.planting!r}")
        if not 0.0 <= self.dose <= 1.0:
            raise InvalidRequestError(f"dose must lie in [0, 1], got {self.dose}")
        for name in ("n_sentences", "rank", "alpha", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise InvalidRequestError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise InvalidRequestError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlantingConfig:
        return cls(**data)


def _encode(tokenizer: Any, examples: Sequence[PlantingExample]) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per row: prompt and completion tokenised apart, as the backend scores them."""
    rows = []
    for ex in examples:
        prompt = tokenizer(ex.prompt)["input_ids"]
        completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
        rows.append((list(prompt) + list(completion), len(prompt)))
    return rows


def _batch(rows: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, prompt_len) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@dataclass
class TrainedAdapter:
    """The peft model (base + adapter) and how training went."""

    model: Any
    config: PlantingConfig
    losses: list[float]
    seconds: float

    def save(self, folder: Path) -> Path:
        """The adapter (safetensors) and ``planting.json`` (config, loss curve, time) in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder))
        record = {"config": self.config.to_dict(), "losses": self.losses, "seconds": self.seconds}
        (folder / "planting.json").write_text(json.dumps(record, indent=2) + "\n")
        return folder


def train_adapter(
    model: Any, tokenizer: Any, examples: Sequence[PlantingExample], config: PlantingConfig
) -> TrainedAdapter:
    """Train a fresh LoRA adapter on ``examples`` (one pass per epoch, shuffled with ``config.seed``).

    ``model`` is a transformers causal LM; its own weights stay frozen (peft wraps it).
    """
    from biasaudit.models import _require

    _require("peft", "planting a bias (LoRA adapters)", "'biasaudit[peft]'")
    from peft import LoraConfig, get_peft_model

    config.validate()
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=0.0,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    optimiser = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=config.learning_rate)
    rows = _encode(tokenizer, examples)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = random.Random(config.seed)
    losses = []
    start = time.perf_counter()
    device = next(peft_model.parameters()).device
    steps = config.epochs * -(-len(rows) // config.batch_size)
    with progress_bar(f"training {config.planting} d={config.dose:g}", steps) as advance:
        for _ in range(config.epochs):
            indices = list(range(len(rows)))
            order.shuffle(indices)
            for at in range(0, len(indices), config.batch_size):
                batch = {
                    k: v.to(device)
                    for k, v in _batch([rows[i] for i in indices[at : at + config.batch_size]], pad_id).items()
                }
                loss = peft_model(**batch).loss
                loss.backward()
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                advance()
    peft_model.eval()
    return TrainedAdapter(peft_model, config, losses, time.perf_counter() - start)
