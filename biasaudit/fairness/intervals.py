"""The numbers behind ``GroupFairness``: fairlearn's definitions on cell counts, and their intervals.

fairlearn's ``MetricFrame`` gives the reported values; a bootstrap needs the same statistics a thousand
times, so they are recomputed here from (label, prediction) cell counts with numpy, and
``tests/test_fairness.py`` checks that on the data they equal fairlearn's.

Intervals (``confidence``, 95 % by default):

* a group's rate: Wilson's score interval on its denominator, as ``biasaudit.stats.proportion`` does and
  for the reason given there (a bootstrap of 12 all-correct rows says [1, 1]).
* the gaps: a bootstrap over rows stratified by group, so every replicate keeps every group at its size.
  Resampling a group's n_g rows with replacement is a Multinomial(n_g, shares) draw over its four
  (label, prediction) cells, so one replicate costs O(groups), not O(rows). A gap is a max over pairs of
  groups, and a percentile or BCa interval of a max fails where it matters: at equal rates every
  replicate of max − min is > 0, so every null would look like a finding (the bootstrap is inconsistent
  on that boundary; Andrews 2000, Econometrica 68:399). Each pairwise contrast instead gets a
  simultaneous interval from the bootstrap distribution of max |contrast* − contrast| / se over pairs
  (the max-t of Romano & Wolf 2005, JASA 100:94), and the gap's interval is the range those intervals
  allow: when every contrast is covered, so is their max. With two groups this is the symmetric
  bootstrap interval of their one difference; with more groups it is exact at equal rates (where the
  range is 0 only if every pair's interval holds 0) and conservative where rates differ. Ratios use the
  contrasts of log rates.
* a group's mean score and ROC AUC: a percentile bootstrap over the group's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biasaudit.errors import InvalidRequestError
from biasaudit.stats import MIN_CI_ITEMS, Estimate, wilson_interval

RATES = ("accuracy", "selection_rate", "tpr", "fpr")
SCORES = ("mean_score", "auc")
# What each rate is a share of: its interval's n, and the word in its notes.
RATE_UNITS = {"accuracy": "rows", "selection_rate": "rows", "tpr": "actual positives", "fpr": "actual negatives"}
# The rates each gap family compares (fairlearn: demographic parity on selection rates, equalized odds on
# the worse of TPR and FPR).
FAMILIES = {"demographic_parity": ("selection_rate",), "equalized_odds": ("tpr", "fpr")}
GAPS = tuple(f"{family}_{kind}" for family in FAMILIES for kind in ("difference", "ratio"))

Seed = int | Sequence[int]


def confusion_cells(y: np.ndarray, pred: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, 4) counts of (label, prediction) = (0, 0) TN, (0, 1) FP, (1, 0) FN, (1, 1) TP per group.

    y, pred: (n,) 0/1; codes: (n,) group numbers 0 .. n_groups − 1.
    """
    flat = np.asarray(codes, np.int64) * 4 + 2 * np.asarray(y, np.int64) + np.asarray(pred, np.int64)
    return np.bincount(flat, minlength=4 * n_groups).reshape(n_groups, 4)


def rates_from_cells(cells: np.ndarray) -> dict[str, np.ndarray]:
    """fairlearn's rates from cell counts (..., 4) -> (...) each: accuracy, selection rate, TPR, FPR.

    NaN where a denominator is empty: a group without actual positives has no TPR (fairlearn, through
    sklearn's normalised confusion matrix, says 0 there).
    """
    tn, fp, fn, tp = np.moveaxis(np.asarray(cells, dtype=np.float64), -1, 0)
    n = tn + fp + fn + tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": (tn + tp) / n,
            "selection_rate": (fp + tp) / n,
            "tpr": tp / (tp + fn),
            "fpr": fp / (fp + tn),
        }


def gap_values(rates: dict[str, np.ndarray]) -> dict[str, float]:
    """fairlearn's four gaps from per-group rates (G,) each: max − min and min / max between groups, the
    equalized-odds ones the worse of TPR and FPR; an empty rate counts as 0, as in fairlearn."""
    out: dict[str, float] = {}
    for family, metrics in FAMILIES.items():
        filled = [np.nan_to_num(rates[m], nan=0.0) for m in metrics]
        out[f"{family}_difference"] = max(float(r.max() - r.min()) for r in filled)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{family}_ratio"] = min(float(r.min() / r.max()) for r in filled)
    return out


def _contrasts(rates: np.ndarray, log: bool) -> np.ndarray:
    """(..., G) -> (..., G(G−1)/2): r_i − r_j, or log r_i − log r_j, for every pair i < j."""
    i, j = np.triu_indices(rates.shape[-1], 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = −inf; −inf − −inf = NaN: callers check
        x = np.log(rates) if log else rates
        return x[..., i] - x[..., j]


def max_abs_interval(point: np.ndarray, replicates: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """Interval of max_c |θ_c| from simultaneous bootstrap intervals θ̂_c ± q·se_c of every contrast c.

    point: (m,) finite estimates θ̂; replicates: (B, m). se_c is the standard deviation of the replicates
    and q the ``confidence`` quantile of max_c |θ*_c − θ̂_c| / se_c (Romano & Wolf 2005). When every θ_c
    lies in its interval, max |θ_c| lies in [max_c max(0, |θ̂_c| − q·se_c), max_c (|θ̂_c| + q·se_c)].
    A replicate where a contrast is undefined (a group's rate empty, or 0 under a log) counts as lying
    beyond every bound; None when more than 1 − ``confidence`` of the replicates do.
    """
    finite = np.isfinite(replicates)
    if np.mean(~finite.all(axis=1)) > 1.0 - confidence:
        return None
    se = np.nanstd(np.where(finite, replicates, np.nan), axis=0, ddof=1)
    with np.errstate(invalid="ignore"):
        deviation = np.divide(np.abs(replicates - point), se, out=np.zeros_like(replicates), where=finite & (se > 0))
    deviation[~finite] = np.inf
    q = float(np.quantile(deviation.max(axis=1), confidence))
    if not np.isfinite(q):
        return None
    half = q * se
    return float(np.maximum(np.abs(point) - half, 0.0).max()), float((np.abs(point) + half).max())


def between_group_gaps(
    cells: np.ndarray,
    names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: Seed = 0,
    confidence: float = 0.95,
    min_group_size: int = MIN_CI_ITEMS,
) -> dict[str, Estimate]:
    """The four gaps of ``gap_values`` with stratified-bootstrap intervals (see the module docstring).

    cells: (G, 4) from ``confusion_cells``; names: the G groups' names, for notes. A gap gets no interval,
    and a note instead, with one group, when a group has fewer than ``min_group_size`` of the units its
    rates count, or when a replicate leaves a rate undefined (or 0, for a ratio).
    """
    cells = np.asarray(cells, dtype=np.int64)
    sizes = cells.sum(axis=1)
    if cells.ndim != 2 or cells.shape[1] != 4 or len(cells) == 0 or np.any(sizes == 0):
        raise InvalidRequestError(f"cells must be (groups, 4) counts with rows in every group, got {cells.tolist()}")
    n_groups, n_rows = len(cells), int(sizes.sum())
    point = rates_from_cells(cells)
    values = gap_values(point)
    draws = np.random.default_rng(seed).multinomial(sizes, cells / sizes[:, None], size=(n_bootstrap, n_groups))
    replicates = rates_from_cells(draws)
    counts = {"rows": sizes, "actual positives": cells[:, 2] + cells[:, 3], "actual negatives": cells[:, :2].sum(1)}
    out: dict[str, Estimate] = {}
    for family, metrics in FAMILIES.items():
        small = [
            f"{names[int(g)]} has {counts[unit][g]} {unit}"
            for unit in sorted({RATE_UNITS[m] for m in metrics})
            for g in np.flatnonzero(counts[unit] < min_group_size)
        ]
        for kind in ("difference", "ratio"):
            gap, log = f"{family}_{kind}", kind == "ratio"
            value = values[gap] if np.isfinite(values[gap]) else None
            note, ci = None, None
            if value is None:
                note = "undefined: the rate is 0 in every group"
            elif n_groups < 2:
                note = "only one group: nothing to compare"
            elif small:
                note = f"too few for an interval (need {min_group_size} per group): {'; '.join(small)}"
            else:
                pts = np.concatenate([_contrasts(point[m], log) for m in metrics])
                reps = np.concatenate([_contrasts(replicates[m], log) for m in metrics], axis=-1)
                bounds = max_abs_interval(pts, reps, confidence) if np.all(np.isfinite(pts)) else None
                if bounds is None:
                    zero = " or 0" if log else ""
                    note = f"no interval: a group's rate is undefined{zero} here or in too many bootstrap replicates"
                else:
                    low, high = bounds
                    # min / max = exp(−max |log r_i − log r_j|): a decreasing map of the log range
                    ci = (float(np.exp(-high)), float(np.exp(-low))) if log else (low, min(high, 1.0))
            out[gap] = Estimate(value, ci, n_rows, note)
    return out


def rate_estimate(
    successes: int, n: int, *, confidence: float = 0.95, min_items: int = MIN_CI_ITEMS, unit: str = "rows"
) -> Estimate:
    """successes / n with Wilson's interval: None and a note when n is 0, no interval below ``min_items``."""
    if n == 0:
        return Estimate(None, None, 0, f"no {unit}: undefined")
    value = successes / n
    if n < min_items:
        return Estimate(value, None, n, f"only {n} {unit}: too few for an interval (need {min_items})")
    return Estimate(value, wilson_interval(successes, n, confidence=confidence), n)


def auc_from_levels(levels: np.ndarray, positive: np.ndarray, n_levels: int) -> np.ndarray:
    """ROC AUC (Mann–Whitney: P(a positive's score > a negative's), ties counted ½) of each row.

    levels: (B, n) rank of each score among the distinct scores, 0 .. n_levels − 1; positive: (B, n) 0/1
    labels. Returns (B,), NaN where a row lacks a class. O(B·n): counts per level, no sorting.
    """
    b = levels.shape[0]
    flat = (levels + n_levels * np.arange(b)[:, None]).ravel()
    pos = np.bincount(flat, weights=positive.ravel().astype(np.float64), minlength=b * n_levels).reshape(b, -1)
    neg = np.bincount(flat, minlength=b * n_levels).reshape(b, -1) - pos
    below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def score_estimates(
    score: np.ndarray,
    y: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: Seed = 0,
    confidence: float = 0.95,
    min_items: int = MIN_CI_ITEMS,
) -> dict[str, Estimate]:
    """Mean score and ROC AUC of one group's rows, score and y (n,), with percentile bootstrap intervals.

    The AUC needs both classes (else None and a note), and ``min_items`` of each for an interval.
    """
    score, y = np.asarray(score, dtype=np.float64), np.asarray(y, dtype=np.int64)
    n, n_pos = len(y), int(y.sum())
    levels = np.unique(score, return_inverse=True)[1].reshape(-1)
    n_levels = int(levels.max()) + 1
    point = {"mean_score": float(score.mean()), "auc": float(auc_from_levels(levels[None], y[None], n_levels)[0])}
    counts = {
        "mean_score": {"rows": n},
        "auc": {"actual positives": n_pos, "actual negatives": n - n_pos},
    }
    rng = np.random.default_rng(seed)
    replicates: dict[str, list[np.ndarray]] = {"mean_score": [], "auc": []}
    chunk = max(1, 4_000_000 // n)  # resampled rows held at once: bounded memory at any n
    for start in range(0, n_bootstrap if n >= min_items else 0, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))
        replicates["mean_score"].append(score[idx].mean(axis=1))
        replicates["auc"].append(auc_from_levels(levels[idx], y[idx], n_levels))
    tail = (1.0 - confidence) / 2.0
    out: dict[str, Estimate] = {}
    for metric, value in point.items():
        small = [f"{k} {unit}" for unit, k in counts[metric].items() if k < min_items]
        if not np.isfinite(value):
            out[metric] = Estimate(None, None, n, "only one class of label: AUC undefined")
        elif small:
            out[metric] = Estimate(
                value, None, n, f"only {', '.join(small)}: too few for an interval (need {min_items})"
            )
        else:
            reps = np.concatenate(replicates[metric])
            if not np.all(np.isfinite(reps)):
                out[metric] = Estimate(value, None, n, "no interval: a bootstrap replicate had one class only")
                continue
            low, high = np.quantile(reps, [tail, 1.0 - tail])
            out[metric] = Estimate(value, (float(low), float(high)), n)
    return out
