"""Do the traditional benchmarks' 95% intervals cover the truth? CrowS-Pairs, BBQ, StereoSet, WinoBias.

Each check simulates per-item model behaviour with a known population value of the statistic and feeds
it to the function each benchmark builds its reported ``Estimate`` with (``<Benchmark>()._scores``, the
step after the backend's log-likelihoods), so the procedure checked is the one the package reports.

The truth is a population value: items are written from templates (BBQ question templates, StereoSet
target terms, WinoBias sentence pairs), and a template pulls all its items the same way, so each
simulation draws template effects first and items within them; the truth is the expectation over both
(computed in closed form or from a very large sample). Sizes are the ones the package meets: a
category under ``--limit 200`` (tens of items, mostly one per template), a whole category (hundreds of
items from about 25 templates), and values near the boundary (90-100 %, s_DIS near 1, accuracy near 0).

A "differs from 50" (CrowS-Pairs) or "differs from 0" (BBQ bias scores, WinoBias gap) reading of an
interval is checked as a test: size = how often the interval excludes the null value when it holds,
power = how often it excludes it under a planted effect. ``median_p`` of those records is the 0/1
exclusion indicator, not a p-value.

Items are built with ``_make``, which drops fields a dataclass lacks, so this file runs unchanged on the
code before issue 17 (BBQ answers had no ``template``), to show where the old intervals failed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from scipy.special import expit, softmax
from scipy.stats import binom, norm
from stats_harness import MAX_SIZE, MIN_COVERAGE, interval_coverage, n_datasets, rejection_rate

from biasaudit.metrics.bbq import BBQ, BBQAnswer
from biasaudit.metrics.crows_pairs import CrowSPairs, PairScore
from biasaudit.metrics.stereoset import StereoSet, StereoSetScore
from biasaudit.metrics.winobias import WinoBias, WinoBiasOutcome

TRUTH_DRAWS = 400_000  # template effects drawn to compute a truth that has no closed form


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _make(cls: type, **fields: Any) -> Any:
    names = _field_names(cls)
    return cls(**{k: v for k, v in fields.items() if k in names})


def _replay(results: list[Any]) -> Callable[[np.random.Generator], Any]:
    """A ``draw`` for the harness that hands back precomputed datasets in order (several statistics of
    one simulated benchmark are checked on the same datasets)."""
    it: Iterator[Any] = iter(results)
    return lambda rng: next(it)


def _interval(est: Any) -> tuple[tuple[float, float] | None, float]:
    return (tuple(est.ci95) if est.ci95 is not None else None), (est.value if est.value is not None else np.nan)


def _excludes(est: Any, null: float) -> float:
    """0.0 (rejected) when the reported interval excludes ``null``, else 1.0, for ``rejection_rate``."""
    return 0.0 if est.ci95 is not None and not est.ci95[0] <= null <= est.ci95[1] else 1.0


# ----------------------------------------------------------------------------------------------- CrowS-Pairs


def _crows_from_hits(preferred: np.ndarray) -> Any:
    items = [
        PairScore(str(i), "gender", "stereo", -1.0 if p else -2.0, -2.0 if p else -1.0) for i, p in enumerate(preferred)
    ]
    return CrowSPairs()._scores(items).pct_stereotype


def _crows(rng: np.random.Generator, n: int, rate: float) -> Any:
    """n independent pairs, each preferring the stereotype with probability ``rate``."""
    return _crows_from_hits(rng.random(n) < rate)


@pytest.mark.parametrize(
    ("n", "rate"),
    [(20, 0.5), (50, 0.9), (36, 0.97), (200, 0.6)],
    ids=["bias-type-20-at-50", "bias-type-50-at-90", "bias-type-36-at-97", "overall-200-at-60"],
)
def test_crows_pairs_pct_stereotype_covers(n, rate):
    check = interval_coverage(
        f"crows_pairs pct_stereotype, {n} pairs, true {100 * rate:.0f}%",
        lambda rng: _interval(_crows(rng, n, rate)),
        100 * rate,
        n=n_datasets(400),
    )
    assert check.coverage >= MIN_COVERAGE, check
    assert check.n_missing == 0


def _crows_exact_rejection(n: int, rate: float) -> float:
    """P(the interval excludes 50) exactly: with independent pairs the data are just k preferred of n, so
    the package's procedure is run once per k and weighted by the binomial probability of k."""
    rows = [_crows_from_hits(np.arange(n) < k) for k in range(n + 1)]
    return float(sum(binom.pmf(k, n, rate) * (1.0 - _excludes(est, 50.0)) for k, est in enumerate(rows)))


def test_crows_pairs_differs_from_50_size_and_power():
    n = n_datasets(400)
    for pairs, rate in ((20, 0.5), (50, 0.5), (50, 0.7), (200, 0.6)):
        rejection_rate(
            f"crows_pairs pct_stereotype excludes 50, {pairs} pairs, true {100 * rate:.0f}%",
            lambda r, pairs=pairs, rate=rate: _excludes(_crows(r, pairs, rate), 50.0),
            n=n,
            kind="size" if rate == 0.5 else "power",
            effect=100 * rate - 50,
        )
    # Simulated rates above carry Monte Carlo error (+-0.012 at 400 datasets); the exact ones do not.
    # Wilson's size at 50 % swings with n between 0.04 and 0.065 (a score test on a discrete count).
    for pairs in (20, 36, 50, 60, 200):
        assert _crows_exact_rejection(pairs, 0.5) <= MAX_SIZE, pairs
    # power of 0.84 and 0.81: about what the exact binomial test has at these sizes
    assert _crows_exact_rejection(50, 0.7) >= 0.8 and _crows_exact_rejection(200, 0.6) >= 0.8


# ------------------------------------------------------------------------------------------------------- BBQ

# The six shared categories' templates hold 4 to 76 questions (480 in ~23 templates); these sizes are
# Age's, halved per context condition.
BBQ_TEMPLATE_SIZES = np.array([2, 4, 4, 6, 6, 8, 8, 10, 10, 10, 12, 12, 12, 14, 14, 16, 16, 18, 18, 20, 8, 6, 6])


@dataclasses.dataclass(frozen=True)
class BBQWorld:
    """How a simulated model answers BBQ, per template: logits of (biased, counter-biased, UNKNOWN).

    Disambiguated: the gold person (half the time the biased answer) gets ``+read``; ambiguous: no gold
    person. ``template_sd`` is the spread of each logit across templates.
    """

    stereotype: float
    read: float
    unknown_dis: float
    unknown_amb: float
    template_sd: float

    def probs(self, effects: np.ndarray, condition: str, gold_biased: bool | None) -> np.ndarray:
        """effects: (..., 3) template offsets -> (..., 3) answer probabilities."""
        unknown = self.unknown_amb if condition == "ambig" else self.unknown_dis
        base = np.array([self.stereotype, 0.0, unknown])
        if gold_biased is not None:
            base = base + np.array([self.read, 0.0, 0.0] if gold_biased else [0.0, self.read, 0.0])
        return softmax(base + effects, axis=-1)


@functools.lru_cache
def _bbq_truth(world: BBQWorld) -> dict[str, float]:
    effects = world.template_sd * np.random.default_rng(99).standard_normal((TRUTH_DRAWS, 3))
    to_biased, to_counter = world.probs(effects, "disambig", True), world.probs(effects, "disambig", False)
    dis = (to_biased + to_counter).mean(axis=0) / 2.0  # P(biased), P(counter), P(UNKNOWN), gold balanced
    accuracy_dis = (to_biased[:, 0].mean() + to_counter[:, 1].mean()) / 2.0
    amb = world.probs(effects, "ambig", None).mean(axis=0)
    return {
        "accuracy_disambig": 100.0 * accuracy_dis,
        "accuracy_ambig": 100.0 * amb[2],
        "bias_disambig": 2.0 * dis[0] / (dis[0] + dis[1]) - 1.0,
        "bias_ambig": amb[0] - amb[1],
    }


def _bbq_answers(rng: np.random.Generator, world: BBQWorld, per_condition: int | None) -> list[Any]:
    """One category: Age's template sizes (all questions, or ``per_condition`` drawn from them)."""
    effects = world.template_sd * rng.standard_normal((len(BBQ_TEMPLATE_SIZES), 3))
    slots = np.repeat(np.arange(len(BBQ_TEMPLATE_SIZES)), BBQ_TEMPLATE_SIZES)
    answers = []
    for condition in ("ambig", "disambig"):
        templates = slots if per_condition is None else np.sort(rng.choice(slots, per_condition, replace=False))
        gold_biased = rng.random(len(templates)) < 0.5
        if condition == "ambig":
            p = world.probs(effects[templates], condition, None)
        else:
            p = np.where(
                gold_biased[:, None],
                world.probs(effects[templates], condition, True),
                world.probs(effects[templates], condition, False),
            )
        # 0 biased, 1 counter-biased, 2 UNKNOWN
        chosen = (rng.random(len(templates))[:, None] > np.cumsum(p, axis=1)[:, :2]).sum(axis=1)
        labels = np.full(len(templates), 2) if condition == "ambig" else np.where(gold_biased, 0, 1)
        for i, (t, c, label) in enumerate(zip(templates, chosen.tolist(), labels.tolist(), strict=True)):
            answers.append(
                _make(
                    BBQAnswer,
                    example_id=i,
                    category="Age",
                    template=f"Age/{t}",
                    context_condition=condition,
                    question_polarity="neg",
                    label=label,
                    logprobs=(0.0, 0.0, 0.0),
                    n_tokens=(1, 1, 1),
                    chosen=c,
                    correct=c == label,
                    unknown_chosen=c == 2,
                    biased_chosen=c == 0,
                )
            )
    return answers


def _bbq_datasets(world: BBQWorld, per_condition: int | None, n: int, seed: int = 0) -> list[Any]:
    return [BBQ()._scores(_bbq_answers(np.random.default_rng([seed, i]), world, per_condition)) for i in range(n)]


TYPICAL = BBQWorld(stereotype=0.7, read=1.0, unknown_dis=-1.0, unknown_amb=0.0, template_sd=1.0)
BBQ_CASES = {
    # --limit 200 over 6 categories: ~18 questions per condition, mostly one per template
    "limit-18-per-condition": (TYPICAL, 18),
    # a whole shared category: 240 questions per condition in 23 templates
    "category-240-per-condition": (TYPICAL, None),
    # the default model's regime: almost never UNKNOWN in ambiguous contexts (accuracy near 0), strong pull
    "never-unknown-strong-bias-limit": (BBQWorld(3.0, 1.0, -3.0, -4.0, 0.5), 18),
    # a strong model: almost always UNKNOWN when ambiguous (s_AMB near 0, often no error at all)
    "mostly-unknown-limit": (BBQWorld(0.7, 3.0, -3.0, 4.0, 0.5), 18),
}


@pytest.mark.parametrize("case", list(BBQ_CASES))
def test_bbq_intervals_cover(case):
    world, per_condition = BBQ_CASES[case]
    truth = _bbq_truth(world)
    n = n_datasets(250)
    datasets = _bbq_datasets(world, per_condition, n)
    failures = []
    for key, value in truth.items():
        check = interval_coverage(
            f"bbq {key}, {case}",
            _replay([_interval(getattr(d, key)) for d in datasets]),
            value,
            n=n,
        )
        if check.coverage < MIN_COVERAGE:
            failures.append(check)
    assert not failures, failures


def test_bbq_bias_scores_differ_from_0_size_and_power():
    n = n_datasets(250)
    null = BBQWorld(stereotype=0.0, read=1.0, unknown_dis=-1.0, unknown_amb=0.0, template_sd=1.0)
    # with answers spread this much across templates, a category's 23 templates are what the power rests
    # on: s_DIS = 0.17 is found in about 1 category of 5, s_DIS = 0.32 in most
    weak, planted = dataclasses.replace(null, stereotype=0.5), dataclasses.replace(null, stereotype=1.0)
    for world, kind in ((null, "size"), (weak, "weak"), (planted, "power")):
        # the null world is symmetric in the biased and counter-biased answer: both scores are exactly 0
        truth = {"bias_disambig": 0.0, "bias_ambig": 0.0} if kind == "size" else _bbq_truth(world)
        datasets = _bbq_datasets(world, None, n, seed=1)
        for key in ("bias_disambig", "bias_ambig"):
            check = rejection_rate(
                f"bbq {key} excludes 0, whole category, true {truth[key]:.3f}",
                _replay([_excludes(getattr(d, key), 0.0) for d in datasets]),
                n=n,
                kind="size" if kind == "size" else "power",
                effect=truth[key],
            )
            if kind != "weak":
                assert check.rate <= MAX_SIZE if kind == "size" else check.rate >= 0.5, check


# ------------------------------------------------------------------------------------------------- StereoSet


@dataclasses.dataclass(frozen=True)
class StereoWorld:
    """Per-token scores of (stereotype, anti-stereotype, unrelated) = (δ_t + e, e', ω_t + e''), e ~ N(0, 1),
    with term effects δ_t ~ N(pull, sd²), ω_t ~ N(unrelated, sd²)."""

    pull: float
    unrelated: float
    term_sd: float

    @functools.cached_property
    def truth(self) -> dict[str, float]:
        rng = np.random.default_rng(98)
        delta = self.pull + self.term_sd * rng.standard_normal(TRUTH_DRAWS)
        omega = self.unrelated + self.term_sd * rng.standard_normal(TRUTH_DRAWS)
        root2 = np.sqrt(2.0)
        ss = 100.0 * norm.cdf(delta / root2).mean()
        lms = 100.0 * (norm.cdf((delta - omega) / root2) + norm.cdf(-omega / root2)).mean() / 2.0
        return {"lms": lms, "ss": ss, "icat": lms * min(ss, 100.0 - ss) / 50.0}


def _stereoset(rng: np.random.Generator, world: StereoWorld, sizes: np.ndarray) -> Any:
    delta = world.pull + world.term_sd * rng.standard_normal(len(sizes))
    omega = world.unrelated + world.term_sd * rng.standard_normal(len(sizes))
    term = np.repeat(np.arange(len(sizes)), sizes)
    noise = rng.standard_normal((len(term), 3))
    scores = noise + np.stack([delta[term], np.zeros(len(term)), omega[term]], axis=1)
    items = [
        StereoSetScore("intrasentence", f"term{t}", "race", (float(s[0]), float(s[1]), float(s[2])), "")
        for t, s in zip(term, scores, strict=True)
    ]
    return StereoSet()._scores(items)


STEREOSET_CASES = {
    # --limit 200: 79 terms with 1 to 4 examples each
    "limit-overall-79-terms": (StereoWorld(0.4, -1.5, 0.5), np.tile([1, 2, 3, 4], 20)[:79]),
    # a bias type under --limit 200: 12 terms, 2 examples each
    "limit-bias-type-12-terms": (StereoWorld(0.4, -1.5, 0.5), np.full(12, 2)),
    # a whole bias type (profession: 30 terms, ~55 examples each)
    "full-bias-type-30-terms": (StereoWorld(0.4, -1.5, 0.5), np.full(30, 55)),
    # no stereotype preference on average: ICAT's min(SS, 100 - SS) has its kink at the truth
    "no-preference-ss-50": (StereoWorld(0.0, -1.5, 0.5), np.full(30, 55)),
    # a model that almost never prefers the unrelated candidate: LMS near 100
    "lms-near-100": (StereoWorld(0.4, -5.0, 0.5), np.full(30, 10)),
}


@pytest.mark.parametrize("case", list(STEREOSET_CASES))
def test_stereoset_intervals_cover(case):
    world, sizes = STEREOSET_CASES[case]
    n = n_datasets(200)
    datasets = [_stereoset(np.random.default_rng([2, i]), world, sizes) for i in range(n)]
    failures = []
    for key, value in world.truth.items():
        check = interval_coverage(
            f"stereoset {key}, {case}", _replay([_interval(getattr(d, key)) for d in datasets]), value, n=n
        )
        if check.coverage < MIN_COVERAGE:
            failures.append(check)
    assert not failures, failures


def test_stereoset_ss_differs_from_50_size_and_power():
    n = n_datasets(200)
    sizes = np.full(30, 20)
    for world, kind in ((StereoWorld(0.0, -1.5, 0.5), "size"), (StereoWorld(0.3, -1.5, 0.5), "power")):
        datasets = [_stereoset(np.random.default_rng([3, i]), world, sizes) for i in range(n)]
        check = rejection_rate(
            f"stereoset ss excludes 50, 30 terms x 20, true {world.truth['ss']:.1f}",
            _replay([_excludes(d.ss, 50.0) for d in datasets]),
            n=n,
            kind=kind,
            effect=world.truth["ss"] - 50.0,
        )
        assert check.rate <= MAX_SIZE if kind == "size" else check.rate >= 0.5, check


# -------------------------------------------------------------------------------------------------- WinoBias


@dataclasses.dataclass(frozen=True)
class WinoWorld:
    """P(correct) = expit(ability ± gap/2 + sentence + occupation pair): the pro sentence gets +gap/2.

    The sentence effect (sd ``sentence_sd``) is shared by a pair's pro and anti version, the occupation
    pair effect (sd ``pair_sd``) by the two pairs written on one occupation pair (ids 2k − 1, 2k)."""

    ability: float
    gap: float
    sentence_sd: float
    pair_sd: float = 0.5

    @functools.cached_property
    def truth(self) -> dict[str, float]:
        rng = np.random.default_rng(97)
        shared = self.sentence_sd * rng.standard_normal(TRUTH_DRAWS) + self.pair_sd * rng.standard_normal(TRUTH_DRAWS)
        pro = 100.0 * expit(self.ability + self.gap / 2 + shared).mean()
        anti = 100.0 * expit(self.ability - self.gap / 2 + shared).mean()
        return {"accuracy_pro": pro, "accuracy_anti": anti, "gap": pro - anti}


def _winobias(rng: np.random.Generator, world: WinoWorld, n_pairs: int) -> Any:
    occupation = world.pair_sd * rng.standard_normal((n_pairs + 1) // 2)
    shared = world.sentence_sd * rng.standard_normal(n_pairs) + np.repeat(occupation, 2)[:n_pairs]
    pro = rng.random(n_pairs) < expit(world.ability + world.gap / 2 + shared)
    anti = rng.random(n_pairs) < expit(world.ability - world.gap / 2 + shared)
    outcomes = [
        WinoBiasOutcome(1, "test", str(i + 1), (-1.0, -2.0) if p else (-2.0, -1.0), (-1.0, -2.0) if a else (-2.0, -1.0))
        for i, (p, a) in enumerate(zip(pro, anti, strict=True))
    ]
    return WinoBias()._scores(outcomes)


WINOBIAS_CASES = {
    # --limit 200: 100 pairs per type; a strong sentence effect leaves few pairs where pro and anti differ
    "limit-type-100-pairs": (WinoWorld(0.5, 0.3, 2.0), 100),
    # one type of the test split: 396 pairs
    "full-type-396-pairs": (WinoWorld(0.5, 0.3, 2.0), 396),
    # a small type-level subset near the ceiling: accuracies ~95 %, a gap of a few points
    "near-ceiling-40-pairs": (WinoWorld(3.5, 0.8, 1.0), 40),
}


@pytest.mark.parametrize("case", list(WINOBIAS_CASES))
def test_winobias_intervals_cover(case):
    world, n_pairs = WINOBIAS_CASES[case]
    n = n_datasets(300)
    datasets = [_winobias(np.random.default_rng([4, i]), world, n_pairs) for i in range(n)]
    failures = []
    for key, value in world.truth.items():
        check = interval_coverage(
            f"winobias {key}, {case}", _replay([_interval(getattr(d, key)) for d in datasets]), value, n=n
        )
        if check.coverage < MIN_COVERAGE:
            failures.append(check)
    assert not failures, failures


def test_winobias_gap_differs_from_0_size_and_power():
    n = n_datasets(300)
    for world, kind in ((WinoWorld(0.5, 0.0, 2.0), "size"), (WinoWorld(0.5, 0.8, 2.0), "power")):
        datasets = [_winobias(np.random.default_rng([5, i]), world, 396) for i in range(n)]
        check = rejection_rate(
            f"winobias gap excludes 0, 396 pairs, true {world.truth['gap']:.1f} pp",
            _replay([_excludes(d.gap, 0.0) for d in datasets]),
            n=n,
            kind=kind,
            effect=world.truth["gap"],
        )
        assert check.rate <= MAX_SIZE if kind == "size" else check.rate >= 0.5, check
