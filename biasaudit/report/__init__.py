"""Fairness reports rendered from a run folder: ``report.html`` (self-contained) and ``report.md``.

``load_run(DIR)`` reads a finished ``biasaudit audit`` run (its ``results.json``) without the model;
``write_report(DIR)`` renders it. See ``docs/report.md``.
"""

from biasaudit.report.render import render_html, render_markdown, write_report
from biasaudit.report.run import Run, load_run

__all__ = ["Run", "load_run", "render_html", "render_markdown", "write_report"]
