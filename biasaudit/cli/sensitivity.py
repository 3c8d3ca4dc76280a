"""``biasaudit sensitivity``: plant a bias of known dose with LoRA, audit each planted model, and say which
effects move with the dose (docs/sensitivity.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from biasaudit.backend.spec import BackendSpec
from biasaudit.cli.common import ModelArgument, console, fail, with_model_options
from biasaudit.errors import BiasAuditError


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise BiasAuditError(f"expected comma-separated numbers, got {text!r}") from exc


def _ints(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise BiasAuditError(f"expected comma-separated whole numbers, got {text!r}") from exc


@with_model_options(backend="hf")
def sensitivity(
    model: ModelArgument,
    planting: Annotated[str, typer.Option(help="What to plant: yes_prior, label_prior or gender.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; nothing is written outside it.")],
    doses: Annotated[str, typer.Option(help="Comma-separated doses in [0, 1]; 0.5 (the placebo) is required.")] = (
        "0,0.25,0.5,0.75,1"
    ),
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds (replicates per dose).")] = "0,1",
    suite: Annotated[
        str | None, typer.Option("--suite", help="Suites to audit each planted model with (default: the planting's).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=2, help="Score at most N items per suite.")] = None,
    n_sentences: Annotated[int, typer.Option(min=2, help="Planting corpus size (the same at every dose).")] = 512,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 8,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="AdamW learning rate of the adapter.")] = 5e-4,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder of public datasets.")] = None,
    *,
    spec: BackendSpec,
) -> None:
    """Fine-tune MODEL with a controlled dose of a bias (one LoRA adapter per dose and seed), audit each
    planted model, and write OUT/sensitivity.html, .md and .json (resumable)."""
    from biasaudit.sensitivity.run import SensitivityConfig, run_sensitivity

    try:
        config = SensitivityConfig(
            backend=spec,
            planting=planting,
            doses=_floats(doses),
            seeds=_ints(seeds),
            suites=[s.strip() for s in suite.split(",") if s.strip()] if suite else [],
            limit=limit,
            data_dir=str(data_dir) if data_dir else None,
            training={"n_sentences": n_sentences, "rank": rank, "learning_rate": learning_rate},
        )
        config.validate()
        if out.exists() and not out.is_dir():
            raise BiasAuditError(f"--out {out} is a file; name a folder")
        result = run_sensitivity(config, out)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    tracking = [r.metric for r in result.responses if r.moves]
    console.print(
        f"{len(tracking)} of {len(result.responses)} effects move with the dose or its distance from the placebo: "
        f"{escape(', '.join(tracking))}"
    )
    console.print(f"sensitivity: {escape(str(out / 'sensitivity.html'))} (+ sensitivity.md, sensitivity.json)")
