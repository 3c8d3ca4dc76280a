"""``biasaudit lvlm``: how much a vision-language model's answers follow its language prior, and what
post-hoc debias and debiased decoding change (registered in ``cli.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from biasaudit.backend.spec import BackendSpec
from biasaudit.cli.common import (
    console,
    fail,
    with_model_options,
)
from biasaudit.errors import BiasAuditError


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _with_ci(metrics: dict, name: str, digits: int) -> str:
    value, ci = metrics.get(name), metrics.get(f"{name}_ci")
    if value is None:
        return "—"
    return f"{value:.{digits}f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


@with_model_options(backend="vlm")
def lvlm(
    model: Annotated[str, typer.Argument(help="A local vision-language model folder or a hub id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; nothing is written outside it.")],
    probe: Annotated[
        str,
        typer.Option(help="pope, pope-random, pope-popular, pope-adversarial, count, colour, or a saved probe folder."),
    ] = "pope",
    n: Annotated[int, typer.Option("--n", min=1, help="Questions to generate (ignored for a saved probe).")] = 300,
    mitigations: Annotated[str, typer.Option(help="Comma-separated: none, posthoc, sampling, vcd.")] = (
        "none,posthoc,sampling"
    ),
    references: Annotated[str, typer.Option(help="Reference inputs, comma-separated: none, blank, noise, unk.")] = (
        "none"
    ),
    posthoc_mode: Annotated[
        str, typer.Option("--posthoc-mode", help="per_question (the paper's) or dataset (one averaged prior).")
    ] = "per_question",
    posthoc_epsilon: Annotated[
        float | None,
        typer.Option(
            "--posthoc-epsilon",
            min=0.0,
            help="Added to reference probabilities before dividing (default: the authors' 1e-4 per question, "
            "0 for a dataset prior; 0 divides exactly).",
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(min=0.0, help="Debiased decoding strength α.")] = 1.0,
    beta: Annotated[float, typer.Option(min=0.0, max=1.0, help="Adaptive plausibility cut β.")] = 0.1,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per generated answer.")] = 8,
    image_size: Annotated[int, typer.Option("--image-size", min=64, help="Side of the drawn probe images.")] = 224,
    seed: Annotated[int, typer.Option(help="Probe and bootstrap seed.")] = 0,
    save_probe: Annotated[bool, typer.Option("--save-probe", help="Also save the probe's images under OUT/probe.")] = (
        False
    ),
    *,
    spec: BackendSpec,
) -> None:
    """Measure MODEL's language prior on a procedural POPE-style probe, with and without each mitigation."""
    from biasaudit.backend.spec import load_backend
    from biasaudit.jsonio import write_json_atomic
    from biasaudit.lvlm import probe as probes
    from biasaudit.lvlm.evaluate import LVLMEvalConfig
    from biasaudit.lvlm.report import format_change, render_html, render_markdown
    from biasaudit.lvlm.suite import evaluate_lvlm

    params = {
        "mitigations": _split(mitigations), "references": _split(references), "posthoc_mode": posthoc_mode,
        "posthoc_epsilon": posthoc_epsilon, "alpha": alpha, "beta": beta, "max_new_tokens": max_new_tokens,
    }  # fmt: skip
    try:
        LVLMEvalConfig.from_dict({**params, "seed": seed}).validate()  # before any weights load
        saved = Path(probe)
        if saved.is_dir():
            items = probes.load_probe(saved)
        else:
            items = probes.make_probe(probe, n, seed=seed, image_size=image_size)
        backend = load_backend(spec)
        evaluated = evaluate_lvlm(backend, items, probe=probe, seed=seed, image_size=image_size, **params)
    except BiasAuditError as exc:
        raise fail(exc) from exc
    out.mkdir(parents=True, exist_ok=True)
    if save_probe:
        probes.save_probe(items, out / "probe")
    result = evaluated.to_dict()
    write_json_atomic(out / "lvlm.json", result)
    (out / "lvlm.md").write_text(render_markdown(result))
    (out / "lvlm.html").write_text(render_html(result))
    table = Table(title=f"language prior: {backend.name} ({len(items)} items)")
    columns = ("method", "split", "accuracy [95% CI]", "vs peer [95% CI]", "F1", "yes-ratio [95% CI]", "parse fail")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for method, by_split in evaluated.results.items():
        for split, m in by_split.items():
            table.add_row(
                method, split, _with_ci(m, "accuracy", 3),
                format_change(m["accuracy_change"], with_peer=False) if "accuracy_change" in m else "—",
                f"{m['f1']:.3f}" if "f1" in m else "—",
                _with_ci(m, "yes_ratio", 2),
                f"{m['parse_failure_rate']:.2f}" if method in ("greedy", "sampling", "vcd") else "—",
            )  # fmt: skip
    console.print(table)
    console.print(f"results: {os.path.abspath(out / 'lvlm.json')} (+ lvlm.md, lvlm.html)")
