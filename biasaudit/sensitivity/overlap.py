"""The planting corpus must share no word 4-gram with what the planted model is scored on.

Otherwise an audit could detect a planting by memorised wording rather than by the association. Words
are lower-cased runs of letters, digits and apostrophes, so punctuation and case do not hide a match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[a-z0-9']+")


def ngrams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    """The word ``n``-grams of ``text`` (lower-cased)."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def shared_ngrams(corpus: Iterable[str], references: Iterable[str], n: int = 4) -> set[tuple[str, ...]]:
    """The word ``n``-grams that occur both in ``corpus`` and in ``references``."""
    ours: set[tuple[str, ...]] = set()
    for text in corpus:
        ours |= ngrams(text, n)
    found: set[tuple[str, ...]] = set()
    for text in references:
        found |= ngrams(text, n) & ours
    return found
