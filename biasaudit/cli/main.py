"""The ``biasaudit`` command line (typer + rich).

Flags follow lm-evaluation-harness where it has one (``--limit``, ``--batch-size auto``, ``--seed``,
``--output``-style ``--out``), since that is what users already type.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from biasaudit import __version__
from biasaudit.audit.store import DEFAULT_CHUNK_SIZE
from biasaudit.backend.spec import BackendSpec
from biasaudit.cli.common import (
    ModelArgument,
    console,
    err_console,
    fail,
    with_model_options,
)
from biasaudit.errors import BiasAuditError, InvalidRequestError

app = typer.Typer(
    name="biasaudit",
    help="Audit and mitigate bias in LLMs and vision-language models.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"biasaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Audit and mitigate bias in LLMs and vision-language models."""


@app.command()
def models() -> None:
    """Show what `default` resolves to and what the model cache holds."""
    from biasaudit.models import cache_dir, describe_default

    info = describe_default()
    table = Table(title="biasaudit models", show_header=False)
    table.add_row("default", f"{info['name']} (from PyPI package {info['package']})")
    if info["installed"]:
        table.add_row("gguf file", info["gguf"])
        table.add_row("converted copy", info["converted"])
        table.add_row("cached", "yes" if info["cached"] else "no (first load converts it, about 30 s)")
    else:
        table.add_row("installed", f"[red]no[/]: {info['error']}")
    table.add_row("cache dir", str(cache_dir()))
    converted = sorted(p.name for p in (cache_dir() / "models").glob("*") if not p.name.startswith("."))
    table.add_row("converted models", ", ".join(converted) or "(none)")
    table.add_row("also accepted", "a local Hugging Face folder, a .gguf file, or a hub id (when reachable)")
    console.print(table)


@app.command()
def suites() -> None:
    """List the audit suites."""
    from biasaudit.audit import SUITES

    table = Table(title="audit suites")
    table.add_column("suite")
    table.add_column("models")
    table.add_column("what it measures")
    kinds = {"hf": "text", "vlm": "vision-language"}
    for suite in SUITES.values():
        table.add_row(suite.name, kinds.get(suite.backend, suite.backend), suite.description)
    console.print(table)


FailOnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-on",
        help="CI gate, repeatable: exit 3 when it holds, e.g. 'crows_pairs.pct_stereotype > 60' "
        "(SUITE.METRIC[GROUP] OP NUMBER, on the point estimate).",
    ),
]


@app.command()
@with_model_options(backend="auto")
def audit(
    model: ModelArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; nothing is written outside it.")],
    suite: Annotated[
        str | None,
        typer.Option("--suite", help="Comma-separated suites (default: all). See `biasaudit suites`."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=2, help="Score at most N items per suite.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and bootstrap.")] = 0,
    chat_template: Annotated[
        bool,
        typer.Option("--chat-template/--no-chat-template", help="Wrap prompts in the model's chat template."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Recompute suites already saved in --out.")] = False,
    log_samples: Annotated[
        bool, typer.Option("--log-samples", help="Write every request and result to OUT/samples/<suite>.jsonl.")
    ] = False,
    request_chunk: Annotated[
        int,
        typer.Option(
            "--request-chunk",
            min=1,
            help="Requests per stored unit: a killed run recomputes at most one unit per call in flight.",
        ),
    ] = DEFAULT_CHUNK_SIZE,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder of public datasets (default: $BIASAUDIT_DATA).")
    ] = None,
    sae: Annotated[
        str | None,
        typer.Option("--sae", help="SAE folder or sae-lens release: biaslens also scores in SAE-latent space."),
    ] = None,
    fail_on: FailOnOption = None,
    *,
    spec: BackendSpec,
) -> None:
    """Run the audit suites on MODEL and write OUT/results.json and OUT/report.html (resumable).

    A vision-language MODEL (its config has a vision_config) runs the suites for such models (lvlm).
    """
    from biasaudit.audit import RunConfig, run_audit
    from biasaudit.suite import resolve_suites

    try:
        config = RunConfig(
            backend=spec,
            suites=[s.strip() for s in suite.split(",") if s.strip()] if suite else [],
            limit=limit,
            seed=seed,
            apply_chat_template=chat_template,
            data_dir=str(data_dir) if data_dir else None,
            sae=sae,
            log_samples=log_samples,
            request_chunk=request_chunk,
        )
        gates = _gates(fail_on)
        selected = resolve_suites(config.suites, spec.backend) if gates else []
        for gate in gates:  # before any model time is spent
            gate.check(selected)
        path = run_audit(config, out, force=force, console=err_console)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    summary = json.loads(path.read_text())
    table = Table(title=f"biasaudit: {summary['model']['name']}")
    table.add_column("suite")
    table.add_column("headline")
    for name, entry in summary["suites"].items():
        table.add_row(name, escape(entry["headline"]))
    console.print(table)
    console.print(f"results: {os.path.abspath(path)}")
    _print_report(out, gates)


def _gates(texts: list[str] | None) -> list[Any]:
    from biasaudit.report.gates import Gate

    return [Gate.parse(text) for text in texts or []]


def _print_report(out: Path, gates: list[Any], run: Any = None) -> None:
    """Render the report of the run in ``out`` (``run``, when already loaded), then check the CI gates
    (exit 3 when one fails)."""
    from biasaudit.report import load_run, write_report
    from biasaudit.report.gates import GATE_EXIT_CODE, evaluate_gates

    try:
        run = load_run(out) if run is None else run
        html, markdown = write_report(out, run)
        outcomes = evaluate_gates(gates, run.frame()) if gates else []
    except BiasAuditError as exc:
        raise fail(exc) from exc
    console.print(f"report: {os.path.abspath(html)} (+ {markdown.name})")
    for outcome in outcomes:
        status = "[red]FAILED[/red]" if outcome.failed else "[green]passed[/green]"
        console.print(f"gate {escape(repr(outcome.gate.text))}: {status} ({escape(outcome.reason)})")
    if any(outcome.failed for outcome in outcomes):
        failed = [o.gate.text for o in outcomes if o.failed]
        err_console.print(f"error: {len(failed)} gate(s) failed: {escape('; '.join(failed))}")
        raise typer.Exit(GATE_EXIT_CODE)


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="The --out folder of a `biasaudit audit` run.")],
    fail_on: FailOnOption = None,
) -> None:
    """Re-render RUN/report.html and RUN/report.md from RUN/results.json (no model needed); check gates."""
    from biasaudit.report import load_run
    from biasaudit.suite import builtin_suites

    try:
        gates = _gates(fail_on)
        loaded = load_run(run)
        suites = [s for s in builtin_suites().values() if s.name in loaded.results]
        for gate in gates:
            gate.check(suites)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    _print_report(run, gates, loaded)


@app.command()
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Two or more --out folders of `biasaudit audit`; the first is the reference.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for compare.html and compare.md.")],
) -> None:
    """Put two or more audit runs side by side: every shared effect, its difference and whether intervals overlap."""
    from biasaudit.report.compare import write_compare

    try:
        html, markdown = write_compare(runs, out)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    console.print(f"comparison: {os.path.abspath(html)} (+ {markdown.name})")


@app.command()
@with_model_options()
def calibrate(
    model: ModelArgument,
    task: Annotated[str, typer.Option("--task", help="sst2, agnews, trec, cb, rte, or a task YAML path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the prior (JSON).")],
    method: Annotated[str, typer.Option("--method", help="none, cc, dc or bc.")] = "dc",
    shots: Annotated[int, typer.Option(min=0, help="Demonstrations in the prompt.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the demonstrations (and of DC's sampling).")] = 0,
    n_unlabeled: Annotated[int, typer.Option(min=1, help="Unlabeled inputs for DC/BC, from the train pool.")] = 500,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder of public datasets.")] = None,
    *,
    spec: BackendSpec,
) -> None:
    """Fit a label prior for a few-shot TASK prompt and save it (with the prompt) for inference code."""
    from biasaudit.backend.spec import load_backend
    from biasaudit.calibration.base import PriorCalibrator
    from biasaudit.calibration.examples import load_split, sample_demonstrations
    from biasaudit.calibration.tasks import load_task

    try:
        klass = PriorCalibrator.registry.get(method)
        if klass is None:
            raise InvalidRequestError(f"unknown method {method!r}; choose from {sorted(PriorCalibrator.registry)}")
        icl_task = load_task(task)
        train = load_split(icl_task, "train", data_dir)
        demos = sample_demonstrations(train, shots, seed)
        pool = [ex.fields for ex in train if ex not in demos][:n_unlabeled]
        prompt = icl_task.icl_prompt(demos)
        with err_console.status(f"loading model {model!r}"):
            backend = load_backend(spec)
        calibrator = klass(seed=seed) if method == "dc" else klass()  # type: ignore[call-arg]
        calibrator.fit(backend, prompt, pool)
        calibrator.save(out)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    prior = ", ".join(f"{label.strip()}={p:.3f}" for label, p in zip(prompt.labels, calibrator.prior_, strict=True))
    console.print(f"{method} prior for {icl_task.name} ({shots}-shot, seed {seed}): {prior}")
    console.print(f"prior: {os.path.abspath(out)}")


def _register_subcommands() -> None:
    from biasaudit.cli.concepts import concepts_app
    from biasaudit.cli.data import data_app
    from biasaudit.cli.fairness import fairness
    from biasaudit.cli.lvlm import lvlm
    from biasaudit.cli.negbias import negbias_app
    from biasaudit.cli.sae import sae_app
    from biasaudit.cli.sensitivity import sensitivity

    app.add_typer(concepts_app, name="concepts")
    app.add_typer(sae_app, name="sae")
    app.add_typer(negbias_app, name="negbias")
    app.add_typer(data_app, name="data")
    app.command("lvlm")(lvlm)
    app.command("fairness")(fairness)
    app.command("sensitivity")(sensitivity)


_register_subcommands()

if __name__ == "__main__":
    app()
