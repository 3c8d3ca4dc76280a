"""biasaudit: audit and mitigate bias in large language models and vision-language models."""

from biasaudit.errors import BiasAuditError

__version__ = "0.1.0"
__all__ = ["BiasAuditError", "__version__"]
