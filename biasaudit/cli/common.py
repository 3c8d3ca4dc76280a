"""What every ``biasaudit`` sub-command shares: the consoles, error exit, option parsers and the model options."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from biasaudit.backend.batching import BatchSize
from biasaudit.backend.spec import MODEL_ARGS, BackendSpec
from biasaudit.errors import BiasAuditError

console = Console()
err_console = Console(stderr=True)


def fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` (escaped: messages may quote model output or file contents) and exit with code 2."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    return typer.Exit(code=2)


def parse_batch_size(value: str) -> BatchSize:
    if value == "auto":
        return "auto"
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter("use a positive integer or 'auto'") from None
    if size < 1:
        raise typer.BadParameter("use a positive integer or 'auto'")
    return size


def parse_layers(value: str, n_layers: int) -> list[int]:
    """``"all"``, ``"5,10,-1"`` or ranges ``"4-12"`` (inclusive) -> sorted layer numbers (negatives from the top)."""
    if value.strip() == "all":
        return list(range(1, n_layers + 1))
    layers: set[int] = set()
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if match is None:
            raise typer.BadParameter(f"{part!r} is not a layer, a range like 4-12, or 'all'")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        layers.update(range(lo, hi + 1))
    if not layers:
        raise typer.BadParameter("no layers given")
    return sorted(layer + (n_layers + 1 if layer < 0 else 0) for layer in layers)


# ---------------------------------------------------------------------------------------------------------
# The model options: every command that loads a model takes exactly these (tests/test_cli_options.py).
_PANEL = "Model"
_MODEL_ARGS_HELP = "Comma-separated key=value (lm-eval syntax): " + ", ".join(MODEL_ARGS) + "."

ModelArgument = Annotated[str, typer.Argument(help="'default', a local HF folder, a .gguf file, or a hub id.")]
ModelArgsOption = Annotated[
    str | None, typer.Option("--model_args", "--model-args", help=_MODEL_ARGS_HELP, rich_help_panel=_PANEL)
]
DeviceOption = Annotated[
    str | None,
    typer.Option("--device", help="cuda, mps or cpu (default: best available).", rich_help_panel=_PANEL),
]
DtypeOption = Annotated[
    str | None,
    typer.Option(
        "--dtype", help="float32, bfloat16 or float16 (default: by device); = model_args dtype.", rich_help_panel=_PANEL
    ),
]
BatchSizeOption = Annotated[
    str, typer.Option("--batch-size", help="Rows per batch, or 'auto'.", rich_help_panel=_PANEL)
]
TrustRemoteCodeOption = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Allow a hub model's own Python code to run; = model_args trust_remote_code=True.",
        rich_help_panel=_PANEL,
    ),
]


_MODEL_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("model_args", ModelArgsOption, None),
    ("device", DeviceOption, None),
    ("dtype", DtypeOption, None),
    ("batch_size", BatchSizeOption, "auto"),
    ("trust_remote_code", TrustRemoteCodeOption, False),
)


def with_model_options(backend: str = "hf") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared model options; it receives them as one ``spec: BackendSpec``.

    The command declares its ``model`` argument and a ``spec`` parameter; the decorator shows typer the
    five model options instead of ``spec`` (so every command lists the same options, in the same
    panel) and builds the spec before the command body runs, so a bad ``--model_args`` key exits with
    code 2 before any data is read or weights load.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != "spec"]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for name, annotation, default in _MODEL_OPTIONS
        ]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name, _, _ in _MODEL_OPTIONS}
            try:
                spec = BackendSpec.parse(
                    kwargs["model"],
                    model_args=options["model_args"],
                    backend=backend,
                    device=options["device"],
                    batch_size=parse_batch_size(options["batch_size"]),
                    dtype=options["dtype"],
                    trust_remote_code=options["trust_remote_code"],
                )
            except BiasAuditError as exc:
                raise fail(exc) from exc
            return command(spec=spec, **kwargs)

        run.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in own + added}
        return run

    return decorate
