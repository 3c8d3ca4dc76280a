"""Negative-bias metrics of yes/no answers, each with a 95% interval that treats *questions* as the unit.

Song, Yu, Yoon 2025 (arXiv 2511.10881) read negative bias off the confusion matrix with "Yes" as the
positive class: a model that says No too often has high precision and low recall, a No-rate above the
gold No-rate, and a false-negative rate above its false-positive rate. ``yesno_metrics`` reports those
numbers (docs/methods.md §4), plus how often the model abstained ("I don't know") or gave no parseable answer.

Answers are *semantic*: "yes" means the model asserted the item holds, whatever word it used (for a
negated question, literally saying "No"). The confusion-matrix metrics count only items answered yes or
no, so abstentions and parse failures never pass for a No; they have their own rates. ``literal_no_rate``
is the one metric read from the *literal* answers (which label word the model chose): comparing it with
``no_rate`` across negated and plain prompts tells a preference for the word "No" apart from a
preference for rejecting.

**Intervals.** Every metric but two is a share of items (precision: gold Yes among the items answered
Yes; the No-rate: answered No among the items answered Yes or No; ...). Its interval is Wilson's score
interval (``stats.proportion``), which keeps its coverage at small n and at 0 or 1 -- where this
model lives: it answers No to every item of most subsets, and a bootstrap of all-No answers is the point
[1, 1] (Brown, Cai & DasGupta 2001). A short-answer question gives a paired Yes item and No item, and
whatever the model does not know about the question it does not know for both (a model that says No
when unsure says it to both), so items are not independent: the interval uses the effective number of
items given the questions (Kish's design effect from the cluster-robust variance, with Korn & Graubard's
correction for the number of questions; ``stats.effective_sample_size``). Native yes/no questions have
one item each, and the plain Wilson interval. The two differences, P − R and FNR − FPR, combine the
intervals of their two shares by MOVER (Newcombe 1998, Statistics in Medicine 17:873, method 10; Zou &
Donner 2008, Statistics in Medicine 27:1693), with the correlation of the two shares estimated over
questions (the shares overlap: precision and recall share the true positives; FNR and FPR come from the
two items of one question). ``tests/stats/test_negbias_intervals.py`` checks them all by simulation,
and shows that treating items as independent under-covers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from biasaudit.errors import InvalidRequestError
from biasaudit.stats import MIN_CI_ITEMS, Estimate, proportion

Answer = Literal["yes", "no", "idk", "fail"]
ANSWERS: tuple[Answer, ...] = ("yes", "no", "idk", "fail")
_YES, _NO, _IDK, _FAIL = range(4)

# Below this many items no metric is reported at all.
MIN_METRIC_ITEMS = 2


@dataclass(frozen=True)
class _Items:
    """One group's items: gold (True = Yes), semantic and literal answer codes, and question index."""

    gold: np.ndarray
    pred: np.ndarray
    lit: np.ndarray
    question: np.ndarray

    @property
    def answered(self) -> np.ndarray:
        return (self.pred == _YES) | (self.pred == _NO)


# A share: (which items count, which of those are hits). Order of METRICS is the order of the output.
_Share = tuple[np.ndarray, np.ndarray]


def _shares(it: _Items) -> dict[str, _Share]:
    said_yes, said_no, answered = it.pred == _YES, it.pred == _NO, it.answered
    lit_answered = (it.lit == _YES) | (it.lit == _NO)
    every = np.ones_like(it.gold)
    return {
        "precision": (said_yes, it.gold),
        "recall": (it.gold & answered, said_yes),
        "fnr": (it.gold & answered, said_no),
        "fpr": (~it.gold & answered, said_yes),
        "no_rate": (answered, said_no),
        "gold_no_rate": (answered, ~it.gold),
        "literal_no_rate": (lit_answered, it.lit == _NO),
        "idk_rate": (every, it.pred == _IDK),
        "parse_failure_rate": (every, it.pred == _FAIL),
        "accuracy_answered": (answered, said_yes == it.gold),
    }


# name -> (the share(s) it is made of, why it can be undefined). A difference names two shares.
METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "precision": (("precision",), "no item was answered Yes"),
    "recall": (("recall",), "no answered item has gold answer Yes"),
    "pr_gap": (
        ("precision", "recall"),
        "precision or recall is undefined (no Yes answer, or no gold Yes among answered items)",
    ),
    "no_rate": (("no_rate",), "no item was answered Yes or No"),
    "gold_no_rate": (("gold_no_rate",), "no item was answered Yes or No"),
    "literal_no_rate": (("literal_no_rate",), "no item was answered with the literal Yes or No label"),
    "fnr_minus_fpr": (("fnr", "fpr"), "the answered items lack gold Yes or gold No items"),
    "idk_rate": (("idk_rate",), "no items"),
    "parse_failure_rate": (("parse_failure_rate",), "no items"),
    "accuracy_answered": (("accuracy_answered",), "no item was answered Yes or No"),
}


def _codes(answers: Sequence[str] | np.ndarray, name: str) -> np.ndarray:
    codes: dict[str, int] = {a: i for i, a in enumerate(ANSWERS)}
    bad = sorted({str(a) for a in answers if a not in codes})
    if bad:
        raise InvalidRequestError(f"{name} holds {bad}; every answer must be one of {list(ANSWERS)}")
    return np.array([codes[str(a)] for a in answers], dtype=np.int64)


def _share(it: _Items, share: _Share) -> Estimate:
    """The share with its Wilson interval over the effective number of items given the questions."""
    counted, hits = share
    clusters = it.question[counted]
    one_each = len(np.unique(clusters)) == len(clusters)
    return proportion(hits[counted], clusters=None if one_each else clusters, scale=1.0, min_items=0,
                      cluster_unit="question")  # fmt: skip


def _influence(it: _Items, share: _Share, n_questions: int) -> np.ndarray:
    """Per-question influence of a ratio share (Σ hits / Σ counted): (hits_q − p · counted_q) / Σ counted."""
    counted, hits = share
    total = counted.sum()
    p = (hits & counted).sum() / total
    per_q = np.bincount(it.question, weights=(hits & counted) - p * counted, minlength=n_questions)
    return per_q / total


def _point(share: _Share) -> float:
    counted, hits = share
    return float(np.mean(hits[counted]))


def _difference(it: _Items, first: _Share, second: _Share, n_questions: int) -> tuple[float, float] | None:
    """MOVER interval of first − second from the two Wilson intervals and their correlation over questions
    (Zou & Donner 2008): L = d − √((p1 − l1)² + (u2 − p2)² − 2r(p1 − l1)(u2 − p2)),
    U = d + √((u1 − p1)² + (p2 − l2)² − 2r(u1 − p1)(p2 − l2))."""
    a, b = _share(it, first).ci95, _share(it, second).ci95
    if a is None or b is None:
        return None
    (l1, u1), (l2, u2) = a, b
    p1, p2 = _point(first), _point(second)
    z1, z2 = _influence(it, first, n_questions), _influence(it, second, n_questions)
    scale = float(np.sqrt((z1 @ z1) * (z2 @ z2)))
    r = float(z1 @ z2) / scale if scale > 0 else 0.0
    low = p1 - p2 - np.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * r * (p1 - l1) * (u2 - p2)))
    high = p1 - p2 + np.sqrt(max(0.0, (u1 - p1) ** 2 + (p2 - l2) ** 2 - 2 * r * (u1 - p1) * (p2 - l2)))
    return max(-1.0, float(low)), min(1.0, float(high))


def _metric(it: _Items, name: str, n_questions: int, min_questions: int) -> Estimate:
    parts, why_undefined = METRICS[name]
    shares = [_shares(it)[part] for part in parts]
    n = len(it.gold)
    if any(not counted.any() for counted, _ in shares):
        return Estimate(None, None, n, why_undefined)
    value = _point(shares[0]) - (_point(shares[1]) if len(shares) == 2 else 0.0)
    if n_questions < min_questions:
        return Estimate(
            value, None, n, f"only {n_questions} questions: too few for a 95% interval (need {min_questions})"
        )
    if len(shares) == 2:
        ci = _difference(it, shares[0], shares[1], n_questions)
        return Estimate(value, ci, n, None if ci else "no 95% interval: a share it is made of has none")
    est = _share(it, shares[0])
    return Estimate(value, est.ci95, n, est.note)


def yesno_metrics(
    gold: Sequence[bool] | np.ndarray,
    predicted: Sequence[str] | np.ndarray,
    *,
    literal: Sequence[str] | np.ndarray | None = None,
    clusters: Sequence[Hashable] | None = None,
    metrics: Sequence[str] | None = None,
    min_ci_items: int = MIN_CI_ITEMS,
) -> dict[str, Any]:
    """Negative-bias metrics of one group of items, "Yes" being the positive class.

    gold: (n,) bools, True = the gold answer is Yes.
    predicted: (n,) semantic answers, each "yes", "no", "idk" or "fail" (no parseable answer).
    literal: (n,) the label word the model chose, in the same vocabulary ("no" = the negative label
        word, whatever it means). Only ``literal_no_rate`` reads it; None means the answers were literal
        (every scenario but a negated one), so ``literal_no_rate`` equals ``no_rate``.
    clusters: (n,) the question each item comes from (hashable keys; a QA question's Yes and No items
        share one): the intervals count questions, not items, as independent. None: every item is its
        own question (native yes/no items).
    metrics: names of the metrics to compute (default: all of ``METRICS``, in that order).
    min_ci_items: fewer questions than this get values but no interval (with a note).

    Returns ``{"n": int, "n_questions": int, "n_answered": int, <metric>: Estimate.to_dict(), ...}``
    with the metrics precision, recall, pr_gap (precision − recall), no_rate and gold_no_rate (shares
    of the items answered Yes or No that were answered No / are gold No), literal_no_rate,
    fnr_minus_fpr, idk_rate and parse_failure_rate (shares of all items), accuracy_answered. Each
    metric's ``n`` counts items. A metric that is undefined on the items has value None and a note
    saying why; fewer than 2 items give every metric None with a note.
    """
    gold_arr = np.asarray(gold)
    if gold_arr.ndim != 1 or (gold_arr.size and gold_arr.dtype != np.bool_):
        raise InvalidRequestError(f"gold must be a 1-d array of bools (True = Yes), got dtype {gold_arr.dtype}")
    pred = _codes(predicted, "predicted")
    lit = pred if literal is None else _codes(literal, "literal")
    if clusters is not None and len(clusters) != len(pred):
        raise InvalidRequestError(f"clusters must name one question per item, got {len(clusters)} for {len(pred)}")
    if not len(gold_arr) == len(pred) == len(lit):
        raise InvalidRequestError(
            f"gold, predicted and literal must have one entry per item, got {len(gold_arr)}, {len(pred)}, {len(lit)}"
        )
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise InvalidRequestError(f"unknown metric(s) {unknown}; valid metrics: {list(METRICS)}")
    n = len(pred)
    if clusters is None:
        question = np.arange(n)
    else:
        index: dict[Hashable, int] = {}
        question = np.array([index.setdefault(key, len(index)) for key in clusters], dtype=np.int64)
    n_questions = int(question.max()) + 1 if n else 0
    answered = int(np.sum((pred == _YES) | (pred == _NO)))
    out: dict[str, Any] = {"n": n, "n_questions": n_questions, "n_answered": answered}
    if n < MIN_METRIC_ITEMS:
        note = "no items" if n == 0 else "only 1 item: too few items for any metric or a 95% interval"
        out.update({name: Estimate(None, None, n, note).to_dict() for name in names})
        return out
    items = _Items(gold_arr.astype(bool), pred, lit, question)
    for name in names:
        out[name] = _metric(items, name, n_questions, min_ci_items).to_dict()
    return out
