"""One error hierarchy: user errors are typed, printed in one line, exit 2; anything else is a bug, exit 1."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

import biasaudit
from biasaudit.audit import SUITES
from biasaudit.cli import app
from biasaudit.suite import SkippedResult, Suite

runner = CliRunner()


def test_the_package_raises_no_bare_value_errors():
    """A user error is a ``BiasAuditError`` subclass (``InvalidRequestError`` is also a ValueError)."""
    package = Path(biasaudit.__file__).parent
    bare = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(call, ast.Name) and call.id in {"ValueError", "TypeError", "KeyError"}:
                    bare.append(f"{path.relative_to(package)}:{node.lineno}")
    assert bare == []


def test_a_user_error_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["negbias", "eval", "default", "--set", str(tmp_path / "nope.jsonl"), "--out", "o"])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and "nope.jsonl" in result.output
    assert len(result.output.strip().splitlines()) <= 2 and "Traceback" not in result.output


def test_an_internal_failure_is_exit_1(tmp_path, tiny_model, tokenizer, monkeypatch):
    def broken(backend, config):
        raise RuntimeError("a bug")

    monkeypatch.setitem(SUITES, "broken", Suite("broken", "fails", broken, SkippedResult))
    folder = tmp_path / "tiny"
    tiny_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    result = runner.invoke(app, ["audit", str(folder), "--suite", "broken", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)


@pytest.mark.parametrize("bad", [["--references", "bogus"]])
def test_a_bad_option_value_is_a_user_error(bad, tmp_path, monkeypatch):
    import biasaudit.models as models

    monkeypatch.setattr(models, "load_vlm", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    result = runner.invoke(app, ["lvlm", "some-vlm", "--out", str(tmp_path / "o"), *bad])
    assert result.exit_code == 2 and "Traceback" not in result.output
