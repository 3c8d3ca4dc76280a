"""Do the negative-bias intervals cover the truth? Every metric of ``yesno_metrics``, and the content-free P(Yes).

**Paired questions.** A short-answer question gives two items, its gold answer proposed (gold Yes) and a wrong
candidate (gold No). Whatever the model does not know about the question it does not know for both, so each
simulated question draws a *type* and both items are answered from that type's answer distributions
(independently given the type; answers yes / no / I don't know):

* ``knows`` -- right on both items, with 10% slips;
* ``says_no`` -- unsure, answers No to both (the negative bias of Song et al. 2025);
* ``says_yes`` -- unsure, answers Yes to both;
* ``abstains`` -- takes "I don't know" on both.

The truth of each metric is its population value, a ratio of expected counts per question (TP = Σ_t w_t
P_t(yes | gold-Yes item), and so on), exact from the type weights. Each dataset goes through the package's own
``yesno_metrics``, once with ``clusters`` = the question (what the evaluator does) and once without (items taken
as independent, as the package's item bootstrap did before issue 17; also what a native yes/no set with one
item per question gets). Taken as independent, items under-cover the metrics that add up both items of a
question (No-rate, IDK rate, FNR − FPR): that is the reason for counting questions, and the tests assert it.
The saturated regime of the default model (No to nearly everything) is checked too: a bootstrap of all-No
answers is the point [1, 1].

**Native yes/no questions** (BoolQ, StrategyQA): one item per question, so the two are the same; their
coverage is checked on independent items.

**Tests.** "The model is negatively biased" is read off an interval that excludes the unbiased value (P − R gap
0, No-rate 0.5, FNR − FPR 0): size under a planted symmetric null with the same strong question effects, power
under a planted shift from ``says_yes`` to ``says_no`` questions. ``median_p`` of those records is the 0/1
exclusion indicator, not a p-value.

**Content-free P(Yes).** A grid of question templates × content-free inputs (5 × 8, the shipped probe), with
logit P(Yes) = μ + template effect + input effect + noise; the truth is the mean of P(Yes) over the population
of templates and inputs. ``ContentFreeYesNoPrior.fit`` runs on a scripted backend that returns those
probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest
from stats_harness import MAX_SIZE, MIN_COVERAGE, interval_coverage, n_datasets, rejection_rate

from biasaudit.negbias.content_free import ContentFreeYesNoPrior, YesNoPromptSet
from biasaudit.negbias.metrics import yesno_metrics

ANSWER_WORDS = np.array(["yes", "no", "idk"])
METRICS = ("precision", "recall", "pr_gap", "no_rate", "fnr_minus_fpr", "idk_rate")

# type -> (weight, P(yes, no, idk) on the gold-Yes item, P(yes, no, idk) on the gold-No item)
Types = dict[str, tuple[float, tuple[float, float, float], tuple[float, float, float]]]


BIASED: Types = {  # knows 10% of the questions; of the others, answers most No twice
    "knows": (0.10, (0.95, 0.05, 0.0), (0.05, 0.95, 0.0)),
    "says_no": (0.50, (0.03, 0.95, 0.02), (0.03, 0.95, 0.02)),
    "says_yes": (0.25, (0.93, 0.05, 0.02), (0.93, 0.05, 0.02)),
    "abstains": (0.15, (0.0, 0.10, 0.90), (0.0, 0.10, 0.90)),
}


def symmetric(shift: float = 0.0) -> Types:
    """No negative bias at ``shift`` 0 (P − R = 0, No-rate = 0.5, FNR = FPR), yet strong question effects;
    ``shift`` moves questions from answered Yes twice to answered No twice."""
    return {
        "knows": (0.10, (0.95, 0.05, 0.0), (0.05, 0.95, 0.0)),
        "says_no": (0.45 + shift, (0.05, 0.95, 0.0), (0.05, 0.95, 0.0)),
        "says_yes": (0.45 - shift, (0.95, 0.05, 0.0), (0.95, 0.05, 0.0)),
    }


def near_boundary() -> Types:
    """Almost always No (No-rate 0.96, recall 0.06): the saturated regime of the default model."""
    return {
        "knows": (0.05, (0.90, 0.10, 0.0), (0.10, 0.90, 0.0)),
        "says_no": (0.95, (0.02, 0.98, 0.0), (0.02, 0.98, 0.0)),
    }


def truth(types: Types) -> dict[str, float]:
    """Population values of the metrics: ratios of expected counts per question."""
    tp = sum(w * y[0] for w, y, _ in types.values())
    fn = sum(w * y[1] for w, y, _ in types.values())
    fp = sum(w * n[0] for w, _, n in types.values())
    tn = sum(w * n[1] for w, _, n in types.values())
    idk = sum(w * (y[2] + n[2]) for w, y, n in types.values())
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "pr_gap": precision - recall,
        "no_rate": (fn + tn) / (tp + fp + fn + tn),
        "fnr_minus_fpr": fn / (tp + fn) - fp / (fp + tn),
        "idk_rate": idk / 2,
    }


def paired_dataset(rng: np.random.Generator, types: Types, n_questions: int) -> tuple[np.ndarray, list[str], list[int]]:
    """(gold, answers, question of each item) for ``n_questions`` paired questions."""
    weights = np.array([w for w, _, _ in types.values()])
    kinds = rng.choice(len(types), size=n_questions, p=weights / weights.sum())
    rows = list(types.values())
    gold = np.tile([True, False], n_questions)
    answers = []
    for kind in kinds:
        _, on_yes, on_no = rows[kind]
        answers.append(ANSWER_WORDS[rng.choice(3, p=on_yes)])
        answers.append(ANSWER_WORDS[rng.choice(3, p=on_no)])
    return gold, answers, list(np.repeat(np.arange(n_questions), 2))


def paired_metrics(
    types: Types, n_questions: int, seed: int, clustered: bool, metrics: tuple[str, ...] = ()
) -> list[dict]:
    """``yesno_metrics`` of the datasets the harness will draw (computed once for every metric)."""
    out = []
    for i in range(n_datasets(200)):
        gold, answers, questions = paired_dataset(np.random.default_rng([seed, i]), types, n_questions)
        clusters = questions if clustered else None
        out.append(yesno_metrics(gold, answers, clusters=clusters, metrics=metrics or METRICS))
    return out


def replay(records: list[dict], metric: str):
    it = iter(records)

    def draw(rng: np.random.Generator):
        m = next(it)[metric]
        return (tuple(m["ci95"]) if m["ci95"] is not None else None), (m["value"] if m["value"] is not None else np.nan)

    return draw


def exclusion(records: list[dict], metric: str, null: float):
    """0 when the interval excludes ``null`` (a rejection at 5%), else 1; no interval counts as no rejection."""
    it = iter(records)

    def draw_p(rng: np.random.Generator) -> float:
        ci = next(it)[metric]["ci95"]
        return 1.0 if ci is None or ci[0] <= null <= ci[1] else 0.0

    return draw_p


@pytest.mark.parametrize("n_questions", [150, 30], ids=["150-questions", "30-questions"])
def test_intervals_by_question_cover_paired_items(n_questions):
    records = paired_metrics(BIASED, n_questions, seed=n_questions, clustered=True)
    truths, tag = truth(BIASED), f"biased-{n_questions}q"
    checks = {
        metric: interval_coverage(f"negbias/{tag}/by-question/{metric}", replay(records, metric),
                                  truths[metric], n=len(records))
        for metric in METRICS
    }  # fmt: skip
    for metric, check in checks.items():
        assert check.coverage >= MIN_COVERAGE, (metric, check)


def test_intervals_taking_items_as_independent_under_cover_paired_items():
    records = paired_metrics(BIASED, 150, seed=150, clustered=False)
    truths = truth(BIASED)
    checks = {
        metric: interval_coverage(f"negbias/biased-150q/by-item/{metric}", replay(records, metric),
                                  truths[metric], n=len(records))
        for metric in METRICS
    }  # fmt: skip
    # The metrics that count both items of a question: their spread is the questions', not the items'.
    for metric in ("no_rate", "idk_rate", "fnr_minus_fpr"):
        assert checks[metric].coverage < MIN_COVERAGE, (metric, checks[metric])


@pytest.mark.parametrize("n_questions", [12, 100], ids=["12-questions", "100-questions"])
def test_saturated_answers_are_covered_near_the_boundary(n_questions):
    # 12 questions: the size of the default model's "correct" subset of NQ-Open, where a bootstrap of
    # mostly all-No answers covered the No-rate in about 60% of datasets.
    types, saturated = near_boundary(), ("no_rate", "recall", "fnr_minus_fpr")
    records = paired_metrics(types, n_questions, seed=n_questions, clustered=True, metrics=saturated)
    truths = truth(types)
    for metric in saturated:
        check = interval_coverage(f"negbias/saturated-{n_questions}q/{metric}", replay(records, metric),
                                  truths[metric], n=len(records))  # fmt: skip
        assert check.coverage >= MIN_COVERAGE, (metric, check)


def test_native_items_are_covered():
    # One item per question: gold Yes half the time; P(No) 0.6 on gold-Yes items, 0.9 on gold-No ones.
    n, records = 200, []
    for i in range(n_datasets(400)):
        rng = np.random.default_rng([7, i])
        gold = rng.random(n) < 0.5
        says_no = rng.random(n) < np.where(gold, 0.6, 0.9)
        answers = np.where(says_no, "no", "yes")
        records.append(yesno_metrics(gold, answers, metrics=METRICS[:5]))
    tp, fn, fp, tn = 0.5 * 0.4, 0.5 * 0.6, 0.5 * 0.1, 0.5 * 0.9
    truths = {"precision": tp / (tp + fp), "recall": tp / (tp + fn), "no_rate": fn + tn,
              "fnr_minus_fpr": 0.6 - 0.1}  # fmt: skip
    truths["pr_gap"] = truths["precision"] - truths["recall"]
    for metric, value in truths.items():
        check = interval_coverage(f"negbias/native-200/{metric}", replay(records, metric), value, n=len(records))
        assert check.coverage >= MIN_COVERAGE, (metric, check)


NULLS = {"pr_gap": 0.0, "no_rate": 0.5, "fnr_minus_fpr": 0.0}


def test_no_negative_bias_is_rarely_reported_under_a_null():
    records = paired_metrics(symmetric(), 150, seed=1, clustered=True, metrics=tuple(NULLS))
    assert all(abs(truth(symmetric())[m] - v) < 1e-12 for m, v in NULLS.items())
    for metric, null in NULLS.items():
        size = rejection_rate(f"negbias/null-150q/{metric}-excludes-{null}", exclusion(records, metric, null),
                              n=len(records), kind="size")  # fmt: skip
        assert size.rate <= MAX_SIZE, (metric, size)


def test_taking_items_as_independent_reports_bias_that_is_not_there():
    records = paired_metrics(symmetric(), 150, seed=1, clustered=False, metrics=("no_rate",))
    size = rejection_rate("negbias/null-150q/by-item/no_rate-excludes-0.5", exclusion(records, "no_rate", 0.5),
                          n=len(records), kind="size")  # fmt: skip
    assert size.rate > MAX_SIZE, size


def test_power_against_a_modest_negative_bias():
    shift = 0.10  # 55% of questions answered No twice, 35% Yes twice
    planted = truth(symmetric(shift))
    records = paired_metrics(symmetric(shift), 150, seed=2, clustered=True, metrics=tuple(NULLS))
    power = {
        metric: rejection_rate(f"negbias/shift-0.1-150q/{metric}-excludes-{null}", exclusion(records, metric, null),
                               n=len(records), kind="power", effect=planted[metric] - null).rate
        for metric, null in NULLS.items()
    }  # fmt: skip
    assert min(power.values()) >= 0.4, power


# ---------------------------------------------------------------------------------------------- content-free


def _gauss_hermite_mean_expit(mu: float, sd: float) -> float:
    """E[expit(N(mu, sd²))] by Gauss–Hermite quadrature (exact to ~1e-12 for these sizes)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(weights / np.sqrt(2 * np.pi) / (1 + np.exp(-(mu + sd * nodes)))))


class GridBackend:
    """Label log-probs [log p, log(1 - p)] of each prompt, p from a dict filled per dataset."""

    name = "grid"

    def __init__(self) -> None:
        self.p: dict[str, float] = {}

    def label_log_probs(
        self, prompts, labels, *, mode="first_token", length_normalize=False, apply_chat_template=False
    ):
        return np.log([[self.p[q], 1 - self.p[q]] for q in prompts])


@pytest.mark.parametrize(
    ("template_sd", "input_sd", "tag"),
    [(0.8, 0.3, "templates-dominate"), (0.3, 0.6, "inputs-dominate"), (0.0, 0.0, "no-effects")],
)
def test_content_free_p_yes_interval_covers_the_population_mean(template_sd, input_sd, tag):
    templates = [f"T{t}: {{input}}" for t in range(5)]
    inputs = [f"x{i}" for i in range(8)]
    prompt_set = YesNoPromptSet("sim", "d", [" Yes", " No"], templates, inputs)
    mu, noise_sd = -0.6, 0.2
    backend = GridBackend()

    def draw(rng: np.random.Generator):
        logits = (mu + template_sd * rng.standard_normal((5, 1)) + input_sd * rng.standard_normal((1, 8))
                  + noise_sd * rng.standard_normal((5, 8)))  # fmt: skip
        p = 1 / (1 + np.exp(-logits))
        backend.p = {prompt: float(p[i // 8, i % 8]) for i, (_, prompt) in enumerate(prompt_set.prompts())}
        prior = ContentFreeYesNoPrior().fit(backend, prompt_set)
        return prior.ci_, prior.mean_p_yes_

    total_sd = float(np.sqrt(template_sd**2 + input_sd**2 + noise_sd**2))
    check = interval_coverage(f"negbias/content-free-5x8/{tag}", draw, _gauss_hermite_mean_expit(mu, total_sd),
                              n=n_datasets(300), seed=3)  # fmt: skip
    assert check.coverage >= MIN_COVERAGE, check
