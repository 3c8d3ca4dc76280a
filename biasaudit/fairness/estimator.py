"""``GroupFairness``: fairlearn's ``MetricFrame`` over a frame of predictions, plus the intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from biasaudit.errors import InvalidRequestError
from biasaudit.fairness.intervals import (
    RATE_UNITS,
    RATES,
    between_group_gaps,
    confusion_cells,
    rate_estimate,
    score_estimates,
)
from biasaudit.fairness.result import FairnessResult, GroupMetrics
from biasaudit.stats import MIN_CI_ITEMS, Estimate


def binary_column(series: pd.Series, column: str) -> np.ndarray:
    """A label or prediction column as 0/1 int64, refusing anything else, naming the values it holds."""
    distinct = pd.unique(series)
    try:
        ok = bool(series.notna().all()) and bool(np.isin(series.to_numpy(dtype=np.float64), [0.0, 1.0]).all())
    except (TypeError, ValueError):  # text that is not a number
        ok = False
    if not ok:
        plain = sorted((v.item() if isinstance(v, np.generic) else v for v in distinct[:8]), key=str)
        shown = ", ".join(repr(v) for v in plain) + (", ..." if len(distinct) > 8 else "")
        raise InvalidRequestError(
            f"column {column!r} must hold binary 0/1 (or True/False) values; it holds {len(distinct)} distinct "
            f"value(s): {shown}"
        )
    return series.to_numpy(dtype=np.float64).astype(np.int64)


def _auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """sklearn's ROC AUC, NaN for a group with one class of label (sklearn raises there)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else float("nan")


def _with_value(estimate: Estimate, value: Any) -> Estimate:
    """``estimate`` carrying fairlearn's ``value`` (ours stays None where the rate is undefined)."""
    if estimate.value is None:
        return estimate
    if value is None or not np.isfinite(float(value)):
        return Estimate(None, None, estimate.n, estimate.note or "undefined")
    return Estimate(float(value), estimate.ci95, estimate.n, estimate.note)


class GroupFairness:
    """fairlearn's group metrics and gaps of a binary classifier's predictions, with intervals.

    Parameters
    ----------
    n_bootstrap: bootstrap replicates behind the gaps' and the score metrics' intervals.
    seed: seeds every replicate: the same inputs always give the same result.
    confidence: the intervals' level (kept in ``Estimate.ci95`` whatever it is).
    min_group_size: units (rows; actual positives or negatives for TPR / FPR) a group needs for an
        interval of its rate, and every group for an interval of a gap.

    After ``fit``: ``result_`` (a ``FairnessResult``), ``metric_frame_`` (fairlearn's ``MetricFrame`` of
    the rates), ``by_group_`` (its per-group table) and ``gaps_`` (the four gaps as ``Estimate``s).
    """

    def __init__(
        self, n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95, min_group_size: int = MIN_CI_ITEMS
    ) -> None:
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self.confidence = confidence
        self.min_group_size = min_group_size

    def _check_params(self) -> None:
        if not (isinstance(self.n_bootstrap, int) and self.n_bootstrap >= 2):
            raise InvalidRequestError(f"n_bootstrap must be an integer of at least 2, got {self.n_bootstrap!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise InvalidRequestError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 < self.confidence < 1.0:
            raise InvalidRequestError(f"confidence must lie strictly between 0 and 1, got {self.confidence}")
        if not (isinstance(self.min_group_size, int) and self.min_group_size >= 2):
            raise InvalidRequestError(f"min_group_size must be an integer of at least 2, got {self.min_group_size!r}")

    def fit(
        self, frame: pd.DataFrame, *, label: str, pred: str, groups: Sequence[str], score: str | None = None
    ) -> GroupFairness:
        """Measure ``frame``: one row per example, 0/1 ``label`` and ``pred`` columns, the sensitive-feature
        columns ``groups`` (several: their intersections) and optionally a numeric ``score`` column."""
        from fairlearn.metrics import MetricFrame, count, false_positive_rate, mean_prediction, selection_rate
        from fairlearn.metrics import true_positive_rate as tpr
        from sklearn.metrics import accuracy_score

        self._check_params()
        groups = [groups] if isinstance(groups, str) else list(groups)
        y, p, s = self._validated(frame, label, pred, groups, score)
        features = frame[groups[0]] if len(groups) == 1 else frame[groups]
        metrics = {"count": count, "accuracy": accuracy_score, "selection_rate": selection_rate, "tpr": tpr,
                   "fpr": false_positive_rate}  # fmt: skip
        mf = MetricFrame(metrics=metrics, y_true=y, y_pred=p, sensitive_features=features)
        scores = None
        if s is not None:
            score_metrics = {"mean_score": mean_prediction, "auc": _auc}
            scores = MetricFrame(metrics=score_metrics, y_true=y, y_pred=s, sensitive_features=features)
        index = mf.by_group.index
        rows_key = pd.MultiIndex.from_frame(frame[groups]) if len(groups) > 1 else pd.Index(frame[groups[0]])
        codes = np.asarray(index.get_indexer(rows_key))
        if np.any(codes < 0):
            raise RuntimeError("fairlearn's groups do not match the rows' groups")  # a bug, not a user error
        keys = [tuple(str(v) for v in (key if isinstance(key, tuple) else (key,))) for key in index]
        group_maps = [dict(zip(groups, key, strict=True)) for key in keys]
        names = [", ".join(f"{c}={v}" for c, v in group.items()) for group in group_maps]
        gaps = between_group_gaps(
            confusion_cells(y, p, codes, len(index)), names, n_bootstrap=self.n_bootstrap, seed=self.seed,
            confidence=self.confidence, min_group_size=self.min_group_size,
        )  # fmt: skip
        # The values reported are fairlearn's own: between-groups difference and ratio, worst of TPR and FPR.
        diff, ratio = mf.difference(method="between_groups"), mf.ratio(method="between_groups")
        fairlearn_gaps = {
            "demographic_parity_difference": diff["selection_rate"],
            "demographic_parity_ratio": ratio["selection_rate"],
            "equalized_odds_difference": max(diff["tpr"], diff["fpr"]),
            "equalized_odds_ratio": min(ratio["tpr"], ratio["fpr"]),
        }  # fmt: skip
        self.gaps_ = {gap: _with_value(e, fairlearn_gaps[gap]) for gap, e in gaps.items()}
        by_group = [
            self._group(group_maps[g], np.flatnonzero(codes == g), y, p, s, mf.by_group.iloc[g],
                        None if scores is None else scores.by_group.iloc[g], [self.seed, 1, g])
            for g in range(len(index))
        ]  # fmt: skip
        overall = self._group({}, np.arange(len(y)), y, p, s, mf.overall, None if scores is None else scores.overall,
                              [self.seed, 2])  # fmt: skip
        self.metric_frame_ = mf
        self.by_group_ = mf.by_group
        self.result_ = FairnessResult(
            label=label, pred=pred, groups=groups, score=score, n_rows=len(y), by_group=by_group, overall=overall,
            gaps=self.gaps_, settings={"n_bootstrap": self.n_bootstrap, "seed": self.seed,
                                       "confidence": self.confidence, "min_group_size": self.min_group_size},
        )  # fmt: skip
        return self

    @staticmethod
    def _validated(
        frame: pd.DataFrame, label: str, pred: str, groups: list[str], score: str | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(y, pred, score or None) as arrays, or an ``InvalidRequestError`` naming the column at fault."""
        if not groups:
            raise InvalidRequestError("name at least one group column (the sensitive feature)")
        if len(set(groups)) < len(groups):
            raise InvalidRequestError(f"group columns must differ, got {groups}")
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            raise InvalidRequestError("the predictions have no rows")
        missing = [c for c in dict.fromkeys([label, pred, *groups, *([score] if score else [])]) if c not in frame]
        if missing:
            raise InvalidRequestError(f"column(s) {missing} not in the predictions; columns are {list(frame.columns)}")
        for column in groups:
            if (holes := int(frame[column].isna().sum())) > 0:
                raise InvalidRequestError(f"group column {column!r} is empty in {holes} row(s); fill or drop them")
        y, p = binary_column(frame[label], label), binary_column(frame[pred], pred)
        if not score:
            return y, p, None
        s = pd.to_numeric(frame[score], errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(s)):
            raise InvalidRequestError(f"score column {score!r} must hold a finite number in every row")
        return y, p, s

    def _group(
        self,
        group: dict[str, str],
        rows: np.ndarray,
        y: np.ndarray,
        p: np.ndarray,
        s: np.ndarray | None,
        rates: pd.Series,
        scores: pd.Series | None,
        seed: list[int],
    ) -> GroupMetrics:
        """One group's estimates: fairlearn's values (``rates``, ``scores``) with our intervals."""
        tn, fp, fn, tp = (int(c) for c in confusion_cells(y[rows], p[rows], np.zeros(len(rows)), 1)[0])
        hits = {"accuracy": (tn + tp, len(rows)), "selection_rate": (fp + tp, len(rows)),
                "tpr": (tp, tp + fn), "fpr": (fp, fp + tn)}  # fmt: skip
        out = {}
        for m in RATES:
            ours = rate_estimate(
                *hits[m], confidence=self.confidence, min_items=self.min_group_size, unit=RATE_UNITS[m]
            )
            out[m] = _with_value(ours, rates[m])
        if s is not None and scores is not None:
            scored = score_estimates(s[rows], y[rows], n_bootstrap=self.n_bootstrap, seed=seed,
                                     confidence=self.confidence, min_items=self.min_group_size)  # fmt: skip
            out.update({m: _with_value(e, scores[m]) for m, e in scored.items()})
        return GroupMetrics(group, len(rows), out)
