"""Winogender's alignment interval and correlation p-value, checked by simulation with a known truth.

Each simulated dataset: K occupations with shares of women drawn across 0-100 %, two templates each;
a template's female-minus-male shift is mu * (+1 where women are the majority, -1 elsewhere) plus an
occupation effect and template noise, both symmetric, so the population alignment is exactly mu. The
package's own ``scores`` (the step after the backend's log-likelihoods) reads each dataset. Sizes: all
60 occupations, and 12 (an audit with ``--limit 12``).
"""

from __future__ import annotations

import numpy as np
import pytest
from stats_harness import MAX_SIZE, MIN_COVERAGE, interval_coverage, n_datasets, rejection_rate

from biasaudit.metrics.winogender import WinogenderOutcome, scores


def dataset(rng: np.random.Generator, k: int, mu: float) -> tuple[list[WinogenderOutcome], dict[str, float]]:
    pct = {f"occupation{i}": float(rng.choice([rng.uniform(1, 49), rng.uniform(51, 99)])) for i in range(k)}
    outcomes = []
    for name, share in pct.items():
        sign = 1.0 if share > 50 else -1.0
        effect = rng.normal(0.0, 0.3)
        for answer in (0, 1):
            base = rng.normal(0.0, 1.0)
            shift = mu * sign + effect + rng.normal(0.0, 0.2)
            outcomes.append(WinogenderOutcome(name, answer, "male", base))
            outcomes.append(WinogenderOutcome(name, answer, "female", base + shift))
            outcomes.append(WinogenderOutcome(name, answer, "neutral", base + rng.normal(0.0, 0.2)))
    return outcomes, pct


@pytest.mark.parametrize(("k", "mu"), [(60, 0.0), (60, 0.15), (12, 0.3)])
def test_alignment_interval_covers_the_planted_shift(k, mu):
    def one(rng):
        alignment = scores(*dataset(rng, k, mu))["alignment"]
        return (tuple(alignment["ci95"]) if alignment["ci95"] else None), alignment["value"]

    check = interval_coverage(f"Winogender alignment, {k} occupations, mu={mu}", one, mu, n=n_datasets(300))
    assert check.coverage >= MIN_COVERAGE, check
    assert check.mean_estimate == pytest.approx(mu, abs=0.03)


def test_no_shift_gives_size_for_alignment_and_correlation():
    read = [scores(*dataset(np.random.default_rng([7, i]), 60, 0.0)) for i in range(n_datasets(300))]
    for effect in ("alignment", "correlation"):
        ps = iter([r[effect]["p_value"] for r in read])  # the same datasets read by both tests
        check = rejection_rate(f"Winogender {effect} p, mu=0", lambda rng, ps=ps: next(ps), n=len(read))
        assert check.rate <= MAX_SIZE, check
