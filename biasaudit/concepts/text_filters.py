"""Cleaning generated concept sentences: cut to one sentence, drop empties and refusals, de-duplicate.

A generator model asked for "one sentence about X" returns chatter, quotes, numbered lists, refusals
and many near-copies of the same sentence; a CAV fitted on that learns the chatter. These filters keep
one clean sentence per generation and remove exact and near duplicates (character n-gram TF-IDF
cosine, which catches copies that differ by a word or punctuation).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

# Phrases that mark a refusal or meta-talk rather than an example sentence.
_REFUSAL = re.compile(
    r"\b(i can(?:no|')t|i cannot|i'm sorry|i am sorry|as an ai|i'm not able|i am not able|i won't|"
    r"language model|i apologi[sz]e|here (?:is|are) (?:a|an|some|the)|sure[,!]|certainly[,!])",
    re.IGNORECASE,
)
_LEADING_JUNK = re.compile(r"^\s*(?:(?:[-*\u2022]+|\d+[.)]|sentence\s*\d*\s*:|example\s*\d*\s*:)\s*)+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d]*\s+")


def normalise(text: str) -> str:
    """Lower-case, NFKC, collapsed whitespace, no punctuation: the key for exact de-duplication."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def first_sentence(text: str) -> str:
    """The first non-empty line, without list markers or wrapping quotes, cut after its first sentence."""
    for line in text.strip().splitlines():
        line = _LEADING_JUNK.sub("", line).strip().strip("\"'\u201c\u201d").strip()
        if line:
            sentence = _SENTENCE_END.split(line, maxsplit=1)[0].strip()
            if sentence.count('"') % 2:  # a quote opened for the whole line and cut with it
                sentence = sentence.replace('"', "")
            return sentence
    return ""


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def reject_reason(text: str, *, min_words: int, max_words: int) -> str | None:
    """Why ``text`` is unusable as an example (``None`` when it is fine)."""
    if not text.strip():
        return "empty"
    n_words = len(text.split())
    if n_words < min_words:
        return "too_short"
    if n_words > max_words:
        return "too_long"
    if is_refusal(text):
        return "refusal"
    if text.rstrip().endswith(":"):
        return "meta"  # "The letter reads:" -- an introduction to a sentence, not one
    return None


def near_duplicates(texts: Sequence[str], threshold: float = 0.9) -> list[int]:
    """Indices to drop so that no two kept texts are exact or near duplicates (earlier texts win).

    Exact: same ``normalise`` key. Near: cosine >= ``threshold`` between character 3-5-gram TF-IDF
    vectors (scikit-learn), checked greedily in order.
    """
    drop: list[int] = []
    seen: set[str] = set()
    candidates: list[int] = []
    for i, text in enumerate(texts):
        key = normalise(text)
        if key in seen:
            drop.append(i)
        else:
            seen.add(key)
            candidates.append(i)
    if len(candidates) < 2:
        return drop
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform(
        [normalise(texts[i]) or "_" for i in candidates]
    )
    sims = (vectors @ vectors.T).toarray()
    kept: list[int] = []
    for j in range(len(candidates)):
        if kept and float(np.max(sims[j, kept])) >= threshold:
            drop.append(candidates[j])
        else:
            kept.append(j)
    return sorted(drop)
