"""Every command that loads a model takes the same model options, from one definition."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from biasaudit.cli import app

runner = CliRunner()
MODEL_COMMANDS = [
    ("audit",),
    ("calibrate",),
    ("concepts", "extract"),
    ("sae", "train"),
    ("negbias", "build"),
    ("negbias", "eval"),
    ("lvlm",),
]
MODEL_OPTIONS = {"--model_args", "--model-args", "--device", "--dtype", "--batch-size", "--trust-remote-code"}


def _command(path: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _model_options(command: Any) -> dict[str, tuple[str | None, object]]:
    return {
        opt: (getattr(param, "help", None), param.default)
        for param in command.params
        for opt in param.opts
        if opt in MODEL_OPTIONS
    }


def test_every_model_command_shows_the_same_model_options():
    reference = _model_options(_command(MODEL_COMMANDS[0]))
    assert set(reference) == MODEL_OPTIONS
    for path in MODEL_COMMANDS[1:]:
        assert _model_options(_command(path)) == reference, " ".join(path)


@pytest.mark.parametrize("path", MODEL_COMMANDS, ids=lambda p: " ".join(p))
def test_unknown_model_args_key_fails_before_any_model_loads(path, monkeypatch, tmp_path):
    import biasaudit.models as models

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models, "load_model", no_load)
    monkeypatch.setattr(models, "load_vlm", no_load)
    required = {
        "audit": ["--out", str(tmp_path / "o")],
        "calibrate": ["--task", "sst2", "--out", str(tmp_path / "p.json")],
        "extract": ["--out", str(tmp_path / "o"), "--concepts", "gender"],
        "train": ["--layer", "1", "--out", str(tmp_path / "o")],
        "build": ["--out", str(tmp_path / "s.jsonl")],
        "eval": ["--set", str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "o")],
        "lvlm": ["--out", str(tmp_path / "o")],
    }[path[-1]]
    result = runner.invoke(app, [*path, "some-model", *required, "--model_args", "revison=main"])
    assert result.exit_code == 2, result.output
    assert "unknown model_args key(s) ['revison']" in result.output and "allowed: dtype, revision" in result.output
    assert "Traceback" not in result.output
