"""biasaudit: audit and mitigate bias in large language models and vision-language models."""

from typing import Any

from biasaudit.errors import BiasAuditError

__version__ = "0.1.0"
__all__ = ["BiasAuditError", "__version__", "load_run"]


def __getattr__(name: str) -> Any:
    # ``biasaudit.load_run(DIR)`` for notebooks, imported on first use (the report pulls in pandas).
    if name == "load_run":
        from biasaudit.report.run import load_run

        return load_run
    raise AttributeError(f"module 'biasaudit' has no attribute {name!r}")
