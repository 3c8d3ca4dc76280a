"""Markdown written safely: text from a model or a dataset shown as text, never as HTML or table syntax."""

from __future__ import annotations

from typing import Any


def md_cell(value: Any) -> str:
    """Text made safe for Markdown (a table cell or a line): HTML characters as entities, pipes and
    backticks escaped, one line -- a generated ``<script>`` is displayed, not run, by a Markdown viewer."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("`", "\\`").replace("\r", " ").replace("\n", " ")
