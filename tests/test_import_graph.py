"""Method packages talk to the backend protocol and the shared helpers, never to each other.

The one allowed edge is ``biaslens`` -> ``concepts`` (BiasLens scores concept vectors). Errors, dataset
readers and estimates live in ``errors.py``, ``datasets.py`` and ``stats.py`` so that no method has to
reach into another for a helper. A new cross-import fails here, naming the file and line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import biasaudit

METHODS = {"calibration", "metrics", "negbias", "lvlm", "concepts", "biaslens"}
ALLOWED = {("biaslens", "concepts")}
PACKAGE = Path(biasaudit.__file__).parent


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def cross_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        owner = path.relative_to(PACKAGE).parts[0]
        if owner not in METHODS:
            continue
        for lineno, module in _imported_modules(ast.parse(path.read_text(), filename=str(path))):
            parts = module.split(".")
            if parts[0] != "biasaudit" or len(parts) < 2:
                continue
            target = parts[1]
            if target in METHODS and target != owner and (owner, target) not in ALLOWED:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{lineno} imports {module}")
    return sorted(set(problems))


def test_method_packages_do_not_import_each_other():
    assert cross_imports() == []


def test_the_walker_sees_a_cross_import(tmp_path, monkeypatch):
    fake = tmp_path / "biasaudit"
    (fake / "negbias").mkdir(parents=True)
    (fake / "negbias" / "x.py").write_text("def f():\n    from biasaudit.metrics.common import group_indices\n")
    (fake / "biaslens").mkdir()
    (fake / "biaslens" / "y.py").write_text("from biasaudit.concepts import cav\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert cross_imports() == [
        "biasaudit/negbias/x.py:2 imports biasaudit.metrics.common",
        "biasaudit/negbias/x.py:2 imports biasaudit.metrics.common.group_indices",
    ]
