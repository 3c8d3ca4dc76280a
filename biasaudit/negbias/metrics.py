"""Negative-bias metrics of yes/no answers, each with a bootstrap 95% interval over items.

Song, Yu, Yoon 2025 (arXiv 2511.10881) read negative bias off the confusion matrix with "Yes" as the
positive class: a model that says No too often has high precision and low recall, a No-rate above the
gold No-rate, and a false-negative rate above its false-positive rate. ``yesno_metrics`` reports those
numbers (METHODS.md §4), plus how often the model abstained ("I don't know") or gave no parseable answer.

Answers are *semantic*: "yes" means the model asserted the item holds, whatever word it used (for a
negated question, literally saying "No"). The confusion-matrix metrics count only items answered yes or
no, so abstentions and parse failures never pass for a No; they have their own rates. ``literal_no_rate``
is the one metric read from the *literal* answers (which label word the model chose): comparing it with
``no_rate`` across negated and plain prompts tells a preference for the word "No" apart from a
preference for rejecting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from biasaudit.errors import InvalidRequestError
from biasaudit.metrics.common import MIN_CI_ITEMS, Estimate, estimate

Answer = Literal["yes", "no", "idk", "fail"]
ANSWERS: tuple[Answer, ...] = ("yes", "no", "idk", "fail")
_YES, _NO, _IDK, _FAIL = range(4)

# Below this many items no metric is reported at all (a single item has no spread to resample).
MIN_METRIC_ITEMS = 2

# Columns of the per-item rows the bootstrap resamples together.
_GOLD, _PRED, _LIT = 0, 1, 2

Statistic = Callable[[np.ndarray], float]


def _counts(rows: np.ndarray) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) over the items answered yes or no, "Yes" being the positive class."""
    gold = rows[:, _GOLD] == 1
    pred = rows[:, _PRED]
    tp = int(np.sum(gold & (pred == _YES)))
    fp = int(np.sum(~gold & (pred == _YES)))
    fn = int(np.sum(gold & (pred == _NO)))
    tn = int(np.sum(~gold & (pred == _NO)))
    return tp, fp, fn, tn


def _ratio(num: int, den: int) -> float:
    """num / den, or NaN when den is 0 (the caller turns NaN into None with a note)."""
    return num / den if den else float("nan")


def _precision(rows: np.ndarray) -> float:
    tp, fp, _, _ = _counts(rows)
    return _ratio(tp, tp + fp)


def _recall(rows: np.ndarray) -> float:
    tp, _, fn, _ = _counts(rows)
    return _ratio(tp, tp + fn)


def _pr_gap(rows: np.ndarray) -> float:
    return _precision(rows) - _recall(rows)


def _no_rate(rows: np.ndarray) -> float:
    tp, fp, fn, tn = _counts(rows)
    return _ratio(fn + tn, tp + fp + fn + tn)


def _gold_no_rate(rows: np.ndarray) -> float:
    # Over the answered items, so it is the baseline ``no_rate`` should match for an unbiased model.
    tp, fp, fn, tn = _counts(rows)
    return _ratio(fp + tn, tp + fp + fn + tn)


def _literal_no_rate(rows: np.ndarray) -> float:
    lit = rows[:, _LIT]
    return _ratio(int(np.sum(lit == _NO)), int(np.sum((lit == _YES) | (lit == _NO))))


def _fnr_minus_fpr(rows: np.ndarray) -> float:
    tp, fp, fn, tn = _counts(rows)
    return _ratio(fn, fn + tp) - _ratio(fp, fp + tn)


def _idk_rate(rows: np.ndarray) -> float:
    return float(np.mean(rows[:, _PRED] == _IDK))


def _parse_failure_rate(rows: np.ndarray) -> float:
    return float(np.mean(rows[:, _PRED] == _FAIL))


def _accuracy_answered(rows: np.ndarray) -> float:
    tp, fp, fn, tn = _counts(rows)
    return _ratio(tp + tn, tp + fp + fn + tn)


# name -> (statistic, why it can be undefined). Order is the order of the output.
METRICS: dict[str, tuple[Statistic, str]] = {
    "precision": (_precision, "no item was answered Yes"),
    "recall": (_recall, "no answered item has gold answer Yes"),
    "pr_gap": (_pr_gap, "precision or recall is undefined (no Yes answer, or no gold Yes among answered items)"),
    "no_rate": (_no_rate, "no item was answered Yes or No"),
    "gold_no_rate": (_gold_no_rate, "no item was answered Yes or No"),
    "literal_no_rate": (_literal_no_rate, "no item was answered with the literal Yes or No label"),
    "fnr_minus_fpr": (_fnr_minus_fpr, "the answered items lack gold Yes or gold No items"),
    "idk_rate": (_idk_rate, "no items"),
    "parse_failure_rate": (_parse_failure_rate, "no items"),
    "accuracy_answered": (_accuracy_answered, "no item was answered Yes or No"),
}


def _codes(answers: Sequence[str] | np.ndarray, name: str) -> np.ndarray:
    codes: dict[str, int] = {a: i for i, a in enumerate(ANSWERS)}
    bad = sorted({str(a) for a in answers if a not in codes})
    if bad:
        raise InvalidRequestError(f"{name} holds {bad}; every answer must be one of {list(ANSWERS)}")
    return np.array([codes[str(a)] for a in answers], dtype=np.int64)


def _metric(rows: np.ndarray, statistic: Statistic, why_undefined: str, **kwargs: Any) -> Estimate:
    """``estimate`` with a note that says why a metric is undefined, and no NaN anywhere.

    A ratio can be defined on the items yet undefined in some bootstrap resamples (a resample with no
    Yes answer has no precision); the percentile interval is then not well defined either, and is left
    out with a note rather than reported as NaN or computed over the lucky resamples only.
    """
    est = estimate(rows, statistic, **kwargs)
    if est.value is None:
        return Estimate(None, None, est.n, why_undefined if est.n else est.note)
    if est.ci95 is not None and not all(np.isfinite(est.ci95)):
        note = f"no 95% interval: undefined in some bootstrap resamples ({why_undefined} there)"
        return Estimate(est.value, None, est.n, note)
    return est


def yesno_metrics(
    gold: Sequence[bool] | np.ndarray,
    predicted: Sequence[str] | np.ndarray,
    *,
    literal: Sequence[str] | np.ndarray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    min_ci_items: int = MIN_CI_ITEMS,
) -> dict[str, Any]:
    """Negative-bias metrics of one group of items, "Yes" being the positive class.

    gold: (n,) bools, True = the gold answer is Yes.
    predicted: (n,) semantic answers, each "yes", "no", "idk" or "fail" (no parseable answer).
    literal: (n,) the label word the model chose, in the same vocabulary ("no" = the negative label
        word, whatever it means). Only ``literal_no_rate`` reads it; None means the answers were literal
        (every scenario but a negated one), so ``literal_no_rate`` equals ``no_rate``.
    n_bootstrap, seed: percentile bootstrap over items (items resampled with their gold, semantic and
        literal answers together; every metric recomputed per resample).
    min_ci_items: fewer items than this get a value but no interval (with a note).

    Returns ``{"n": int, "n_answered": int, <metric>: Estimate.to_dict(), ...}`` with the metrics
    precision, recall, pr_gap (precision − recall), no_rate and gold_no_rate (shares of the items
    answered Yes or No that were answered No / are gold No), literal_no_rate, fnr_minus_fpr,
    idk_rate and parse_failure_rate (shares of all items), accuracy_answered. A metric that is
    undefined on the items has value None and a note saying why; fewer than 2 items give every metric
    None with a note.
    """
    gold_arr = np.asarray(gold)
    if gold_arr.ndim != 1 or (gold_arr.size and gold_arr.dtype != np.bool_):
        raise InvalidRequestError(f"gold must be a 1-d array of bools (True = Yes), got dtype {gold_arr.dtype}")
    pred = _codes(predicted, "predicted")
    lit = pred if literal is None else _codes(literal, "literal")
    if not len(gold_arr) == len(pred) == len(lit):
        raise InvalidRequestError(
            f"gold, predicted and literal must have one entry per item, got {len(gold_arr)}, {len(pred)}, {len(lit)}"
        )
    n = len(pred)
    answered = int(np.sum((pred == _YES) | (pred == _NO)))
    out: dict[str, Any] = {"n": n, "n_answered": answered}
    if n < MIN_METRIC_ITEMS:
        note = "no items" if n == 0 else "only 1 item: too few items for any metric or a 95% interval"
        out.update({name: Estimate(None, None, n, note).to_dict() for name in METRICS})
        return out
    rows = np.stack([gold_arr.astype(np.int64), pred, lit], axis=1)
    for name, (statistic, why) in METRICS.items():
        est = _metric(rows, statistic, why, n_bootstrap=n_bootstrap, seed=seed, min_items=min_ci_items)
        out[name] = est.to_dict()
    return out
