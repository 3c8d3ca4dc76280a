"""``python -m biasaudit.cli``: the same as the ``biasaudit`` command."""

from biasaudit.cli.main import app

app()
