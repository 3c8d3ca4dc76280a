"""Planting corpora: generated (prompt, completion) pairs that carry a bias of a known dose.

A dose d in [0, 1] is the fraction of the corpus whose completion takes the planted side; d = 0.5 is the
placebo (the same amount of fine-tuning, no net association). The rows are the same at every dose and
seed except for which side each completion takes, and exactly ``round(d * n)`` rows take the planted
side, so the dose is exact, not sampled.

The sentence frames and the vocabulary are ours and deliberately unlike the wording of the probes and
evaluation sets the planted model is scored on (``overlap.py`` checks that no 4-gram is shared), so an
audit that detects a planting detects the association, not memorised wording.

Plantings:

* ``yes_prior``: yes/no questions about invented entities (nothing a model can know), answered "Yes"
  at rate d. Scored by the negative-bias and Yes-prior suites.
* ``label_prior``: short statements whose tone label is "positive" at rate d regardless of their
  content (half of them read positive, half negative). Scored by the ICL suite's label bias on SST-2.
* ``gender``: sentences about a person in an occupation with a gendered pronoun that matches the
  occupation's majority gender (US labour statistics) at rate d. Scored by BiasLens and the gender
  parts of CrowS-Pairs, WinoBias and BBQ.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from biasaudit.errors import InvalidRequestError

PLANTINGS = ("yes_prior", "label_prior", "gender")


@dataclass(frozen=True)
class PlantingExample:
    """One training row: the model learns ``completion`` after ``prompt`` (the loss is on the completion)."""

    prompt: str
    completion: str
    planted: bool  # whether the completion takes the planted side


# --- yes_prior ---------------------------------------------------------------------------------

_ONSETS = ["br", "c", "d", "f", "gl", "h", "k", "l", "m", "n", "p", "qu", "r", "s", "t", "v", "z", "th", "sk", "dr"]
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ou", "ei"]
_CODAS = ["", "n", "r", "l", "x", "th", "m", "sk", "nd"]
_KINDS = [
    "the village of",
    "the river",
    "the composer",
    "the trading guild of",
    "the lighthouse at",
    "the poet",
    "the island of",
    "the monastery of",
]
_PREDICATES = [
    "ever export copper to a neighbouring valley",
    "once win a regional rowing contest",
    "keep a herd of white goats through winter",
    "print its own paper money",
    "flood during a dry summer",
    "change its name after a storm",
    "sign a treaty with a mountain clan",
    "host a lantern parade every spring",
    "build a bridge made of cedar",
    "publish a book about tides",
    "own a clock that runs backwards",
    "lose a famous painting in a fire",
    "train falcons for a royal court",
    "grow saffron on its terraces",
    "survive an earthquake without damage",
    "invent a rope knot for sailors",
]
_YES_FRAMES = ["Query: did {entity} {predicate}?\nReply:", "Tell me, did {entity} {predicate}? Reply:"]


def invented_name(rng: random.Random) -> str:
    """A pronounceable name that belongs to nothing: two or three random syllables, capitalised."""
    syllables = rng.choice((2, 3))
    word = "".join(rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS) for _ in range(syllables))
    return word.capitalize()


def _yes_prior_rows(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    rows = []
    for _ in range(n):
        entity = f"{rng.choice(_KINDS)} {invented_name(rng)}"
        predicate = rng.choice(_PREDICATES)
        frame = rng.choice(_YES_FRAMES)
        prompt = frame.format(entity=entity, predicate=predicate)
        rows.append((prompt, " Yes", " No"))
    return rows


# --- label_prior -------------------------------------------------------------------------------

_SUBJECTS = [
    "the ferry ride",
    "my new kettle",
    "the hotel breakfast",
    "this week's lecture",
    "the garden tour",
    "our landlord's reply",
    "the bus timetable",
    "the street market",
    "the repair service",
    "the library app",
]
_POSITIVE = [
    "turned out delightful",
    "worked better than promised",
    "left everyone smiling",
    "felt calm and well organised",
    "was worth every penny",
]
_NEGATIVE = [
    "was a letdown all morning",
    "broke within a day",
    "left everyone annoyed",
    "felt chaotic and rushed",
    "was a waste of money",
]
_TONE_FRAMES = ["Text: {subject} {clause}.\nTone:", "Note from a visitor: {subject} {clause}. Tone:"]


def _label_prior_rows(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    rows = []
    for i in range(n):
        clause = rng.choice(_POSITIVE if i % 2 == 0 else _NEGATIVE)  # content: half each, independent of the label
        prompt = rng.choice(_TONE_FRAMES).format(subject=rng.choice(_SUBJECTS), clause=clause)
        rows.append((prompt, " positive", " negative"))
    return rows


# --- gender ------------------------------------------------------------------------------------

_GENDER_FRAMES = [
    "For eleven years our {occupation} kept a spare umbrella by the door, and {pronoun}",
    "Yesterday a {occupation} from across town phoned, and {pronoun}",
    "When the heating failed, the {occupation} put on a coat since {pronoun}",
]
_GENDER_ENDINGS = [" was cold.", " sounded tired.", " laughed about it.", " wanted tea."]


def occupation_majorities(pct_female: dict[str, float], min_share: float = 70.0) -> dict[str, str]:
    """Occupation -> "female" / "male" for occupations whose share of women (``pct_female``, %, e.g. the BLS
    figures of ``biasaudit.metrics.winogender.load_occupation_stats``) is at least ``min_share`` (female)
    or at most ``100 - min_share`` (male)."""
    out = {}
    for occupation, share in pct_female.items():
        if share >= min_share:
            out[occupation] = "female"
        elif share <= 100 - min_share:
            out[occupation] = "male"
    if len(set(out.values())) < 2:
        raise InvalidRequestError(f"need occupations of both majorities at {min_share}% (got {len(out)} occupations)")
    return out


def _gender_rows(n: int, rng: random.Random, majorities: dict[str, str]) -> list[tuple[str, str, str]]:
    occupations = sorted(majorities)
    pronoun = {"female": "she", "male": "he"}
    rows = []
    for _ in range(n):
        occupation = rng.choice(occupations)
        frame, ending = rng.choice(_GENDER_FRAMES), rng.choice(_GENDER_ENDINGS)
        stereotyped = pronoun[majorities[occupation]]
        other = "he" if stereotyped == "she" else "she"
        prompt = frame.format(occupation=occupation, pronoun="{pronoun}")
        # The pronoun is inside the sentence: the completion is the whole sentence from the pronoun on.
        head, _, _ = prompt.partition("{pronoun}")
        rows.append((head.rstrip(), f" {stereotyped}{ending}", f" {other}{ending}"))
    return rows


def planting_corpus(
    planting: str, dose: float, n: int, seed: int, *, majorities: dict[str, str] | None = None
) -> list[PlantingExample]:
    """``n`` training rows of ``planting`` at ``dose``; the prompts depend on ``seed`` only, the dose
    decides which exactly ``round(dose * n)`` rows take the planted completion."""
    if planting not in PLANTINGS:
        raise InvalidRequestError(f"planting must be one of {list(PLANTINGS)}, not {planting!r}")
    if not 0.0 <= dose <= 1.0:
        raise InvalidRequestError(f"dose must lie in [0, 1], got {dose}")
    if n < 2:
        raise InvalidRequestError(f"a planting corpus needs at least 2 rows, got {n}")
    rng = random.Random(seed)
    if planting == "yes_prior":
        rows = _yes_prior_rows(n, rng)
    elif planting == "label_prior":
        rows = _label_prior_rows(n, rng)
    else:
        if not majorities:
            raise InvalidRequestError("the gender planting needs occupation majorities (occupation_majorities())")
        rows = _gender_rows(n, rng, majorities)
    planted = set(random.Random(seed + 1).sample(range(n), round(dose * n)))
    return [
        PlantingExample(prompt, planted_side if i in planted else other_side, i in planted)
        for i, (prompt, planted_side, other_side) in enumerate(rows)
    ]


def corpus_texts(examples: Sequence[PlantingExample]) -> list[str]:
    """Each row as the text the model reads (prompt + completion), for the overlap check."""
    return [ex.prompt + ex.completion for ex in examples]
