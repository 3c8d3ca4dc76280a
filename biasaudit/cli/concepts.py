"""``biasaudit concepts``: build concept vectors (CAVs, optionally SAE-space results) for a model."""

from __future__ import annotations

import os
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
    parse_layers,
    with_model_options,
)
from biasaudit.errors import BiasAuditError

concepts_app = typer.Typer(
    help="Concept Activation Vectors (and SAE latents) from concept definitions, with no manual test set.",
    no_args_is_help=True,
    add_completion=False,
)


@concepts_app.command("list")
def list_groups() -> None:
    """Show the concept groups shipped in probes/concepts."""
    from biasaudit.concepts.definition import load_concept_group, shipped_groups

    table = Table(title="concept groups (probes/concepts)")
    table.add_column("group")
    table.add_column("concepts")
    for name in shipped_groups():
        table.add_row(name, ", ".join(load_concept_group(name).names))
    console.print(table)


def _concept_files(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        concept, sep, path = value.partition("=")
        if not sep or not concept or not path:
            raise typer.BadParameter(f"{value!r}: use GROUP/CONCEPT=PATH")
        out[concept] = path
    return out


@concepts_app.command()
@with_model_options()
def extract(
    model: ModelArgument,
    out: Annotated[Path, typer.Option("--out", help="Output folder (CAVs, metrics, examples).")],
    concepts: Annotated[
        list[str], typer.Option("--concepts", help="Concept group name or YAML path (repeatable, or comma-separated).")
    ],
    layers: Annotated[str, typer.Option(help="'all', or e.g. '5,10,15' / '4-12' / '-1'.")] = "all",
    sae: Annotated[
        Path | None, typer.Option(help="An sae-lens SAE folder: also report concepts in its latents.")
    ] = None,
    source: Annotated[str, typer.Option(help="Concept examples: auto | templates | generated.")] = "auto",
    generic_source: Annotated[str, typer.Option(help="Generic examples: auto | templates | generated.")] = "auto",
    generic_file: Annotated[Path | None, typer.Option(help="User corpus (.txt/.jsonl) for the generic class.")] = None,
    concept_file: Annotated[
        list[str] | None, typer.Option(help="GROUP/CONCEPT=PATH: user text for one concept (repeatable).")
    ] = None,
    generator: Annotated[
        str | None, typer.Option(help="Model that writes generated examples (default: MODEL).")
    ] = None,
    n_examples: Annotated[int, typer.Option(help="Examples per concept.")] = 200,
    n_generic: Annotated[int, typer.Option(help="Generic examples.")] = 200,
    pooling: Annotated[str, typer.Option(help="last | mean")] = "last",
    repeats: Annotated[int, typer.Option(help="Generic resamples per CAV (stability).")] = 10,
    folds: Annotated[int, typer.Option(help="Folds for held-out accuracy.")] = 5,
    seed: Annotated[int, typer.Option()] = 0,
    *,
    spec: BackendSpec,
) -> None:
    """Fit a CAV per concept and layer; write cavs.safetensors, concepts.json and the examples used."""
    from biasaudit.backend.spec import load_backend
    from biasaudit.concepts.extract import ConceptExtractionConfig, ConceptExtractor

    try:
        groups = [g.strip() for value in concepts for g in value.split(",") if g.strip()]
        with err_console.status(f"loading model {model!r}"):
            backend = load_backend(spec)
            gen = load_backend(spec.for_model(generator)) if generator else None
        config = ConceptExtractionConfig(
            groups=groups,
            layers=parse_layers(layers, backend.n_layers),
            n_examples=n_examples,
            n_generic=n_generic,
            source=source,  # type: ignore[arg-type]
            generic_source=generic_source,  # type: ignore[arg-type]
            pooling=pooling,  # type: ignore[arg-type]
            n_repeats=repeats,
            n_folds=folds,
            seed=seed,
            concept_files=_concept_files(concept_file or []),
            generic_file=str(generic_file) if generic_file else None,
        )
        loaded_sae = None
        if sae is not None:
            from biasaudit.concepts.sae import load_sae

            loaded_sae = load_sae(sae, backend=backend)
        extractor = ConceptExtractor(config).fit(backend, generator=gen, sae=loaded_sae)
        path = extractor.save(out)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    table = Table(title=f"concept vectors: {backend.name}")
    table.add_column("concept", no_wrap=True)
    for column in ("best layer", "acc vs generic", "acc within group", "stability", "readable layers", "examples"):
        table.add_column(column)
    for row in extractor.vectors_.summary():
        table.add_row(
            row["concept"],
            str(row["best_layer"]),
            f"{row['accuracy']:.3f}",
            "-" if row["within_group_accuracy"] is None else f"{row['within_group_accuracy']:.3f}",
            f"{row['stability']:.3f}",
            f"{len(row['readable_layers'])}/{len(extractor.vectors_.layers)}",
            str(row["n_examples"]),
        )
    console.print(table)
    for concept, result in extractor.sae_results_.items():
        latents = ", ".join(str(t.latent) for t in result.top_latents[:5]) or "(none)"
        console.print(f"SAE layer {result.layer} · {concept}: top latents {latents}")
    console.print(f"results: {os.path.abspath(path)}")
