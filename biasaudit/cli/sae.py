"""``biasaudit sae``: train sparse autoencoders on a model's residual stream (registered in ``cli.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from biasaudit.backend.spec import BackendSpec
from biasaudit.cli.common import (
    ModelArgument,
    console,
    err_console,
    fail,
    with_model_options,
)
from biasaudit.errors import BiasAuditError

sae_app = typer.Typer(
    help="Sparse autoencoders (sae-lens) on a model's residual stream: train one for SAE-space concept analysis.",
    no_args_is_help=True,
    add_completion=False,
)


@sae_app.callback()
def sae() -> None:
    """Sparse autoencoders (sae-lens) on a model's residual stream."""


def read_corpus(paths: list[Path], text_field: str = "text") -> Iterator[str]:
    """Texts from ``.txt`` files (one per non-empty line) and ``.jsonl`` files (``text_field`` of each row)."""
    from biasaudit.concepts.sources import iter_text_file

    for path in paths:
        for _lineno, text in iter_text_file(path, text_field):
            yield text


@sae_app.command()
@with_model_options()
def train(
    model: ModelArgument,
    layer: Annotated[int, typer.Option("--layer", min=0, help="Layer: 0 = embeddings, l = output of block l.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: an sae-lens SAE + training JSON.")],
    corpus: Annotated[
        list[Path] | None,
        typer.Option("--corpus", help="Text file(s): .txt (one text per line) or .jsonl. Repeatable."),
    ] = None,
    text_field: Annotated[
        str, typer.Option("--text-field", help="Field of each .jsonl row holding the text.")
    ] = "text",
    d_sae: Annotated[int | None, typer.Option("--d-sae", min=1, help="Latents (default: 4 x hidden size).")] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Active latents per token (TopK).")] = 32,
    tokens: Annotated[
        int, typer.Option("--tokens", min=1, help="Training tokens (token passes, over several epochs).")
    ] = 600_000,
    extract_tokens: Annotated[
        int, typer.Option("--extract-tokens", min=1, help="Distinct tokens read from the model (10% held out).")
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed for text order, held-out split, batches and init.")] = 0,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue an interrupted run in --out (default).")
    ] = True,
    *,
    spec: BackendSpec,
) -> None:
    """Train a TopK SAE on LAYER of MODEL; writes OUT (loadable with sae-lens's SAE.load_from_disk)."""
    from biasaudit.backend.spec import load_backend
    from biasaudit.concepts.sae_train import SAETrainingConfig, train_sae

    try:
        with err_console.status(f"loading model {model!r}"):
            backend = load_backend(spec)
        config = SAETrainingConfig(
            layer=layer,
            d_sae=d_sae,
            k=k,
            total_tokens=tokens,
            extract_tokens=extract_tokens,
            seed=seed,
            device=str(backend.device),
        )
        if corpus:
            texts: list[str] = list(read_corpus(corpus, text_field))
        else:
            from biasaudit.concepts.sources import generic_texts

            # ~20 tokens per generated sentence
            n = max(64, extract_tokens // 20)
            err_console.print(f"no --corpus: generating {n} generic sentences with {backend.name}")
            texts = generic_texts(backend, n, seed=seed)
        report = train_sae(backend, texts, config, out, resume=resume)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    table = Table(title=f"SAE: {report.model_name}, layer {report.layer} ({report.hook_name})")
    table.add_column("metric")
    table.add_column("value")
    table.add_row("explained variance (held out)", f"{report.explained_variance:.3f}")
    table.add_row("dead latents (held out)", f"{report.dead_fraction:.1%} of {report.d_sae}")
    table.add_row("L0 (active latents per token)", f"{report.l0:.1f} (k = {report.k})")
    table.add_row(
        "tokens: trained on / distinct / held out",
        f"{report.tokens_seen:,} / {report.n_train_tokens:,} / {report.n_eval_tokens:,}",
    )
    table.add_row("massive-norm tokens dropped", f"{report.dropped_fraction:.3%}")
    table.add_row("wall time", f"{report.wall_time_s:.0f} s (extraction {report.extract_time_s:.0f} s)")
    if report.resumed_from_step:
        table.add_row("resumed from step", str(report.resumed_from_step))
    console.print(table)
    console.print(f"sae: {os.path.abspath(out)}")
