"""Does a generated answer match the gold answers? A three-way verdict: match, partial, mismatch.

Normalisation follows the SQuAD / NQ-Open evaluation script (Rajpurkar et al. 2016, EMNLP; Lee, Chang &
Toutanova 2019, ACL): lower-case, punctuation and the articles a/an/the dropped, whitespace collapsed.
On the normal forms:

* **match** -- the prediction equals a gold alias (SQuAD's exact match; number words up to twenty and
  the tens read as digits); or holds the same words in
  another order (token F1 = 1: "8 May 1945" for "May 8, 1945"); or contains the alias as whole words
  and nothing else but function words ("It is Paris.", "in 1945").
* **partial** -- not a match, but the prediction shares a content word with an alias: "Obama" for
  "Barack Obama", "John Quincy Adams" for "John Adams", "not Paris" for "Paris", "Paris, Texas".
* **mismatch** -- no content word in common with any alias (an empty prediction matches nothing).

Why not a token-F1 threshold or plain containment (the old rule, and common in LLM QA evaluation):
both accept a *different* entity that shares words with the gold one -- "John Quincy Adams" has token
F1 0.8 with "John Adams" -- and containment accepts a negation ("not Paris"). Lexical matching cannot
tell a short form of the right answer from a longer, wrong one (Kamalloo et al. 2023, "Evaluating
Open-Domain Question Answering in the Era of Large Language Models", ACL, arXiv 2305.06984, find both
failure kinds), so the knowledge probe trusts neither: a partial answer is not knowledge
(``knowledge.assign_subset`` puts it in *insufficient*), nor a safe wrong candidate (the set builder
proposes the model's own answer as a No item only on a mismatch). Extra words are allowed only when
they carry no content; a negation cue is a content word, so "not Paris" is never a match.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Literal

Verdict = Literal["match", "partial", "mismatch"]
VERDICTS: tuple[Verdict, ...] = ("match", "partial", "mismatch")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans(dict.fromkeys(string.punctuation + "“”‘’", " "))

# Words that may surround a gold answer without changing what it names: copulas, pronouns, prepositions
# of place and time, approximation, the possessive "s" left by normalisation. Negations ("not", "no",
# "never", "n't" -> "t") are deliberately absent: they change the claim.
FUNCTION_WORDS = frozenset(
    {
        "it", "its", "is", "was", "are", "were", "be", "been", "this", "that", "these", "those", "he", "she",
        "they", "his", "her", "their", "there", "in", "on", "at", "of", "by", "from", "to", "for", "with", "as",
        "and", "about", "around", "approximately", "roughly", "nearly", "answer", "s",
    }
)  # fmt: skip


# Number words up to twenty and the tens, read as digits when answers are compared ("eight" = "8"): a
# model that spells a number the gold answer writes in digits is right, and must not become a No item.
_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)  # fmt: skip
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBERS = {word: str(i) for i, word in enumerate(_UNITS)} | {word: str(10 * i) for i, word in enumerate(_TENS, 3)}


def normalize_answer(text: str) -> str:
    """SQuAD-style normal form: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token-overlap F1 of two answers after normalisation (0 when either is empty)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _words(text: str) -> list[str]:
    """The normalised words of an answer, number words as digits."""
    return [_NUMBERS.get(word, word) for word in normalize_answer(text).split()]


def _contains_with_only_function_words(pred: list[str], ref: list[str]) -> bool:
    """``ref`` occurs in ``pred`` as whole words and every other word of ``pred`` is a function word."""
    width = len(ref)
    for start in range(len(pred) - width + 1):
        if pred[start : start + width] == ref:
            rest = pred[:start] + pred[start + width :]
            if all(word in FUNCTION_WORDS for word in rest):
                return True
    return False


def match_verdict(prediction: str, golds: Sequence[str]) -> Verdict:
    """How ``prediction`` relates to the gold aliases: the best verdict over them (see the module doc)."""
    pred = _words(prediction)
    if not pred:
        return "mismatch"
    content = set(pred) - FUNCTION_WORDS
    verdict: Verdict = "mismatch"
    for gold in golds:
        ref = _words(gold)
        if not ref:
            continue
        if pred == ref or Counter(pred) == Counter(ref) or _contains_with_only_function_words(pred, ref):
            return "match"
        if content & (set(ref) - FUNCTION_WORDS):
            verdict = "partial"
    return verdict


def answers_match(prediction: str, golds: Sequence[str]) -> bool:
    """Whether ``prediction`` matches a gold alias (``match_verdict`` is "match")."""
    return match_verdict(prediction, golds) == "match"


def same_answer(first: str, second: str) -> bool:
    """Whether two generated answers name the same thing (either matches the other)."""
    return answers_match(first, [second]) or answers_match(second, [first])
