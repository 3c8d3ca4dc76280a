"""Do the LVLM evaluation's 95% intervals cover the truth? Accuracy, yes-ratio, and a mitigation's change.

Each check simulates a model's answers to a POPE-style probe with a known population behaviour and feeds them to
the functions ``LVLMEvaluator`` reports with: ``answer_metrics`` (accuracy and yes-ratio with their intervals,
per split and over all items) and ``accuracy_change`` (a mitigation minus its plain peer, on the same items).

The design is the probe's: Yes and No gold answers balanced, items independent (each has its own drawn image),
and items unequal in difficulty (a Beta-distributed chance of each answer per item). A model is described by
its true-positive rate ``tpr`` (says Yes when the object is there) and false-positive rate ``fpr``, so the truth
is accuracy = (tpr + 1 - fpr) / 2 and yes-ratio = (tpr + fpr) / 2 over the item population. Sizes are the ones
the package meets: a split of a ``--n 60`` run (20 items), a split of the default ``--n 300`` (100 items), and
all 300 items; accuracies up to 0.95, where the old percentile bootstrap failed (a sample of 20 right answers
has only the point interval [1, 1]).

"The model leans Yes" (a yes-ratio interval that excludes 0.5) and "the mitigation changed accuracy" (a change
interval that excludes 0) are checked as tests: size under a planted null, power under a planted effect.
``median_p`` of those records is the 0/1 exclusion indicator, not a p-value.
"""

from __future__ import annotations

import numpy as np
import pytest
from stats_harness import MAX_SIZE, MIN_COVERAGE, interval_coverage, n_datasets, rejection_rate

from biasaudit.lvlm.evaluate import accuracy_change, answer_metrics

LABELS = ("Yes", "No")
HETEROGENEITY = 4.0  # Beta(k m, k (1 - m)) per-item chances: items differ in difficulty, mean m


def _chances(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    """Per-item probabilities with population mean ``mean`` (0 and 1 exactly when ``mean`` is)."""
    if mean in (0.0, 1.0):
        return np.full(n, mean)
    return rng.beta(HETEROGENEITY * mean, HETEROGENEITY * (1 - mean), n)


def _answers(rng: np.random.Generator, n: int, tpr: float, fpr: float) -> tuple[list[int], list[int]]:
    """(predicted, gold) label indices for a balanced probe of ``n`` items (0 = Yes, 1 = No)."""
    gold = np.array([0, 1] * (n // 2) + [0] * (n % 2))
    says_yes = np.where(gold == 0, rng.random(n) < _chances(rng, tpr, n), rng.random(n) < _chances(rng, fpr, n))
    return [0 if y else 1 for y in says_yes], gold.tolist()


def _metrics(n: int, tpr: float, fpr: float, seed: int) -> list[dict]:
    """``answer_metrics`` of the datasets the harness will draw, computed once for both statistics."""
    out = []
    for i in range(n_datasets(300)):
        pred, gold = _answers(np.random.default_rng([seed, i]), n, tpr, fpr)
        out.append(answer_metrics(pred, gold, LABELS))
    return out


def _replay(records: list[dict], key: str, estimate: str):
    it = iter(records)

    def draw(rng: np.random.Generator):
        m = next(it)
        return (tuple(m[key]) if m.get(key) is not None else None), m[estimate]

    return draw


REGIMES = [  # (n, tpr, fpr): accuracy, yes-ratio
    (20, 0.95, 0.05),  # 0.95, 0.50: a split of a --n 60 run, a good model
    (20, 0.90, 0.40),  # 0.75, 0.65: a split, a model leaning Yes
    (100, 0.90, 0.10),  # 0.90, 0.50: a split of the default --n 300
    (300, 0.70, 0.50),  # 0.60, 0.60: all items of the default run
]
IDS = ["split-20-at-95", "split-20-at-75", "split-100-at-90", "all-300-at-60"]


@pytest.mark.parametrize(("n", "tpr", "fpr"), REGIMES, ids=IDS)
def test_accuracy_and_yes_ratio_intervals_cover(n, tpr, fpr):
    records = _metrics(n, tpr, fpr, seed=n)
    accuracy, yes_ratio = (tpr + 1 - fpr) / 2, (tpr + fpr) / 2
    tag = f"lvlm/n{n}-tpr{tpr}-fpr{fpr}"
    acc = interval_coverage(f"{tag}/accuracy", _replay(records, "accuracy_ci", "accuracy"), accuracy, n=len(records))
    yes = interval_coverage(
        f"{tag}/yes_ratio", _replay(records, "yes_ratio_ci", "yes_ratio"), yes_ratio, n=len(records)
    )
    assert acc.coverage >= MIN_COVERAGE, acc
    assert yes.coverage >= MIN_COVERAGE, yes
    assert acc.n_missing == yes.n_missing == 0
    # Not bought by width: no wider than twice the normal-approximation width at the truth.
    for check, p in ((acc, accuracy), (yes, yes_ratio)):
        assert check.mean_width <= 2 * 2 * 1.96 * np.sqrt(max(p * (1 - p), 0.05 * 0.95) / n), check


def _leans_yes(n: int, tpr: float, fpr: float):
    def draw_p(rng: np.random.Generator) -> float:
        pred, gold = _answers(rng, n, tpr, fpr)
        low, high = answer_metrics(pred, gold, LABELS)["yes_ratio_ci"]
        return 0.0 if not low <= 0.5 <= high else 1.0

    return draw_p


def test_yes_ratio_size_and_power():
    size = rejection_rate("lvlm/yes_ratio-vs-0.5/n100", _leans_yes(100, 0.8, 0.2), n=n_datasets(300))
    power = rejection_rate(
        "lvlm/yes_ratio-vs-0.5/n100", _leans_yes(100, 0.95, 0.40), n=n_datasets(300), kind="power", effect=0.175
    )
    subtle = rejection_rate(
        "lvlm/yes_ratio-vs-0.5/n100", _leans_yes(100, 0.95, 0.25), n=n_datasets(300), kind="power", effect=0.1
    )
    assert size.rate <= MAX_SIZE, size
    assert power.rate >= 0.8, power  # a model saying Yes 67.5% of the time is caught at 100 items
    assert subtle.rate >= 0.7, subtle  # 60%: 0.85 here; a binomial Wilson interval on all items catches 0.57


# ------------------------------------------------------------------------------------ a mitigation's change


def _paired(rng: np.random.Generator, n: int, base: float, gain: float, loss: float) -> tuple[np.ndarray, np.ndarray]:
    """(mitigation right, peer right) per item: the peer is right with chance ``base`` (per-item Beta); the
    mitigation turns a wrong answer right with chance ``gain`` and a right one wrong with chance ``loss``."""
    peer = rng.random(n) < _chances(rng, base, n)
    u = rng.random(n)
    ours = np.where(peer, u >= _chances(rng, loss, n), u < _chances(rng, gain, n))
    return ours, peer


def _change_truth(base: float, gain: float, loss: float) -> float:
    return (1 - base) * gain - base * loss


CHANGES = [  # (n, base, gain, loss)
    (20, 0.50, 0.30, 0.05),  # +0.125 on a split of a --n 60 run
    (20, 0.70, 0.00, 0.10),  # -0.07: a mitigation that only hurts, small split
    (100, 0.60, 0.30, 0.02),  # +0.108 on a default split
    (300, 0.90, 0.50, 0.00),  # +0.05 near the ceiling, all items
    (100, 0.70, 0.07, 0.03),  # 0: answers move both ways and cancel
]


@pytest.mark.parametrize(("n", "base", "gain", "loss"), CHANGES, ids=[f"n{c[0]}-base{c[1]}" for c in CHANGES])
def test_accuracy_change_interval_covers(n, base, gain, loss):
    truth = _change_truth(base, gain, loss)

    def draw(rng: np.random.Generator):
        change = accuracy_change(*_paired(rng, n, base, gain, loss))
        return tuple(change["ci"]), change["delta"]

    check = interval_coverage(
        f"lvlm/accuracy_change/n{n}-base{base}-gain{gain}-loss{loss}", draw, truth, n=n_datasets(300)
    )
    assert check.coverage >= MIN_COVERAGE, check


def _changed(n: int, base: float, gain: float, loss: float):
    def draw_p(rng: np.random.Generator) -> float:
        low, high = accuracy_change(*_paired(rng, n, base, gain, loss))["ci"]
        return 0.0 if not low <= 0.0 <= high else 1.0

    return draw_p


def test_accuracy_change_size_and_power():
    size = rejection_rate("lvlm/accuracy_change-vs-0/n100", _changed(100, 0.7, 0.07, 0.03), n=n_datasets(300))
    power = rejection_rate(
        "lvlm/accuracy_change-vs-0/n100",
        _changed(100, 0.6, 0.25, 0.0),
        n=n_datasets(300),
        kind="power",
        effect=_change_truth(0.6, 0.25, 0.0),
    )
    assert size.rate <= MAX_SIZE, size
    # +0.10 on 100 items is found in most datasets because the pairing removes the items both get right.
    assert power.rate >= 0.8, power
