"""Every module of the package imports with the declared dependencies (CI builds .venv from pyproject alone)."""

from __future__ import annotations

import importlib
import pkgutil

import biasaudit


def test_every_module_imports():
    modules = pkgutil.walk_packages(biasaudit.__path__, "biasaudit.")
    names = [m.name for m in modules if not m.name.endswith(".__main__")]  # __main__ runs the CLI
    assert "biasaudit.report.render" in names and "biasaudit.fairness.estimator" in names
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a module importing an undeclared package
            failed[name] = str(exc)
    assert failed == {}
