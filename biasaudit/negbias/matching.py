"""Does a generated answer match the gold answers? Normalised exact match, containment and token F1.

Normalisation follows the SQuAD / NQ-Open evaluation convention (Rajpurkar et al. 2016; Lee et al.
2019): lower-case, drop punctuation and the articles a/an/the, collapse whitespace. A short generated
answer often wraps the gold phrase ("It is Paris."), so an answer also matches when a gold alias
appears in it as a whole-word sequence, or when their token F1 reaches ``f1_threshold``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans(dict.fromkeys(string.punctuation + "“”‘’", " "))


def normalize_answer(text: str) -> str:
    """SQuAD-style normal form: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of two answers after normalisation (0 when either is empty)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _contains(haystack: str, needle: str) -> bool:
    return bool(needle) and f" {needle} " in f" {haystack} "


def answers_match(prediction: str, golds: Sequence[str], *, f1_threshold: float = 0.6) -> bool:
    """Whether ``prediction`` matches any gold alias: equal after normalisation, containing the alias as
    whole words, or with token F1 >= ``f1_threshold``. An empty prediction matches nothing."""
    pred = normalize_answer(prediction)
    if not pred:
        return False
    for gold in golds:
        ref = normalize_answer(gold)
        if pred == ref or _contains(pred, ref) or token_f1(pred, ref) >= f1_threshold:
            return True
    return False
