"""``biasaudit negbias``: build a knowledge-stratified yes/no set for a model, then measure negative bias
on it under several prompt scenarios (registered in ``cli.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

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

negbias_app = typer.Typer(
    help="Negative bias in yes/no answering: knowledge-stratified sets and prompt-scenario metrics.",
    no_args_is_help=True,
    add_completion=False,
)


@negbias_app.callback()
def negbias() -> None:
    """Negative bias in yes/no answering (docs/methods.md §4)."""


@negbias_app.command()
@with_model_options()
def build(
    model: ModelArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="The set to write (JSONL); a .build.json goes beside it.")],
    qa: Annotated[
        list[str] | None,
        typer.Option("--qa", help="Short-answer QA file (NQ-Open JSONL or fact YAML) or hub id. Repeatable."),
    ] = None,
    yesno: Annotated[
        list[str] | None,
        typer.Option("--yesno", help="Native yes/no file (BoolQ JSONL, StrategyQA JSON) or hub id. Repeatable."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use N questions from each file, spread evenly over it.")
    ] = None,
    k: Annotated[int, typer.Option(min=1, help="Sampled answers per question.")] = 5,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature of the probe.")] = 0.7,
    min_agree: Annotated[int, typer.Option("--min-agree", min=1, help="Samples that must agree.")] = 4,
    negatives: Annotated[
        str, typer.Option(help="'model_wrong_first' (the model's own wrong answer, else a distractor) or 'distractor'.")
    ] = "model_wrong_first",
    seed: Annotated[int, typer.Option(help="Seed for sampling, distractors and balancing.")] = 0,
    *,
    spec: BackendSpec,
) -> None:
    """Probe what MODEL knows and write a balanced yes/no set split into correct / incorrect /
    insufficient knowledge (with no --qa/--yesno: the shipped fact set)."""
    from biasaudit.backend.spec import load_backend
    from biasaudit.jsonio import write_json_atomic
    from biasaudit.negbias.builder import NegBiasSetBuilder, NegBiasSetConfig
    from biasaudit.negbias.items import save_items
    from biasaudit.negbias.sources import load_inputs

    config = NegBiasSetConfig(k=k, temperature=temperature, min_agree=min_agree, negatives=negatives, seed=seed)
    try:
        config.validate()
        qa_sources, questions, native = load_inputs(qa or [], yesno or [], limit)
        backend = load_backend(spec)
        builder = NegBiasSetBuilder(config).fit(backend, qa=questions, yesno=native)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    path = save_items(builder.items_, out)
    write_json_atomic(
        out.with_suffix(".build.json"),
        {"model": backend.name, "fingerprint": backend.fingerprint, "config": config.to_dict(),
         "qa": qa_sources, "yesno": list(yesno or []), "limit": limit, "summary": builder.summary_},
    )  # fmt: skip
    table = Table(title=f"negative-bias set for {backend.name}")
    for column in ("subset", "items", "Yes", "No", "candidates", "dropped to balance"):
        table.add_column(column)
    for subset, counts in builder.summary_["subsets"].items():
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts["kinds"].items()))
        table.add_row(subset, str(counts["n_items"]), str(counts["n_yes"]), str(counts["n_no"]), kinds,
                      str(counts["dropped_to_balance"]))  # fmt: skip
    console.print(table)
    console.print(f"set: {os.path.abspath(path)}")


@negbias_app.command("eval")
@with_model_options()
def evaluate(
    model: ModelArgument,
    set_path: Annotated[Path, typer.Option("--set", help="A set written by `biasaudit negbias build`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; nothing is written outside it.")],
    scenarios: Annotated[
        str | None, typer.Option(help="Comma-separated scenarios (default: all). plain,context,idk,cot,...")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Generation seed (chain-of-thought is greedy: matters only when sampling).")
    ] = 0,
    cot_tokens: Annotated[int, typer.Option("--cot-tokens", min=1, help="Tokens of chain-of-thought.")] = 128,
    chat_template: Annotated[
        bool, typer.Option("--chat-template/--no-chat-template", help="Wrap prompts in the model's chat template.")
    ] = False,
    *,
    spec: BackendSpec,
) -> None:
    """Measure negative bias of MODEL on a set: metrics per knowledge subset x prompt scenario."""
    from biasaudit.backend.spec import load_backend
    from biasaudit.jsonio import write_json_atomic
    from biasaudit.negbias.evaluate import NegBiasEvaluator
    from biasaudit.negbias.items import load_items

    kwargs: dict[str, Any] = {"seed": seed, "cot_max_new_tokens": cot_tokens, "apply_chat_template": chat_template}
    if scenarios:
        kwargs["scenarios"] = tuple(s.strip() for s in scenarios.split(",") if s.strip())
    try:
        items = load_items(set_path)
        evaluator = NegBiasEvaluator(**kwargs)
        backend = load_backend(spec)
        evaluator.fit(backend, items)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    result = {"model": backend.name, "set": str(set_path), **evaluator.to_dict(include_predictions=True)}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "negbias.json"
    write_json_atomic(path, result)
    console.print(results_table(evaluator.results_, title=f"negative bias: {backend.name}"))
    console.print(kind_table(evaluator.results_by_kind_, title="by question kind (how the No candidate was made)"))
    console.print(f"results: {os.path.abspath(path)}")
    if err_console.is_terminal:
        err_console.print("Yes = positive class; P−R > 0 and No-rate above the gold No-rate mean negative bias.")


def _cell(entry: Any) -> str:
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "—"
    return f"{entry['value']:.2f}"


_COLUMNS = {"precision": "precision", "recall": "recall", "pr_gap": "P−R", "no_rate": "No-rate",
            "gold_no_rate": "gold No", "idk_rate": "IDK", "accuracy_answered": "acc. answered"}  # fmt: skip


def _count(metrics: dict[str, Any], key: str) -> str:
    n = metrics.get(key, "")
    return str(n.get("value") if isinstance(n, dict) else n)


def results_table(results: dict[str, Any], title: str) -> Table:
    """Scenario x subset rows: precision, recall, P−R, No-rate vs gold, IDK rate, accuracy answered."""
    table = Table(title=title)
    for column in ("scenario", "subset", "n", *_COLUMNS.values()):
        table.add_column(column)
    for scenario, by_subset in results.items():
        for subset, metrics in by_subset.items():
            if not isinstance(metrics, dict):
                continue
            table.add_row(scenario, subset, _count(metrics, "n"), *(_cell(metrics.get(key)) for key in _COLUMNS))
    return table


def kind_table(results_by_kind: dict[str, Any], title: str) -> Table:
    """Scenario x subset x question kind rows (distractor / model_wrong / native), the same columns."""
    table = Table(title=title)
    for column in ("scenario", "subset", "kind", "questions", *_COLUMNS.values()):
        table.add_column(column)
    for scenario, by_subset in results_by_kind.items():
        for subset, kinds in by_subset.items():
            for kind, metrics in kinds.items():
                cells = (_cell(metrics.get(key)) for key in _COLUMNS)
                table.add_row(scenario, subset, kind, _count(metrics, "n_questions"), *cells)
    return table
