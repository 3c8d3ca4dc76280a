"""The ``biasaudit`` command line: ``main`` holds the app and its top-level commands, one module per
command group (``concepts``, ``sae``, ``negbias``, ``lvlm``), and ``common`` what they share (the model
options, error exit, option parsers)."""

from biasaudit.cli.main import app

__all__ = ["app"]
