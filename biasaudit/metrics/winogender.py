"""Winogender schemas (Rudinger et al., NAACL 2018): does a pronoun's gender change whom the model reads
it as, in the direction of the occupations' gender statistics?

Data, as the authors distribute it: ``all_sentences.tsv`` and ``templates.tsv`` (folder ``winogender``)
and ``occupations-stats.tsv`` (folder ``occupation_gender_stats``: the share of women in each occupation,
US Bureau of Labor Statistics 2015). Each of the 60 occupations has two templates, one whose pronoun
refers to the occupation (answer 0) and one whose pronoun refers to the other participant (answer 1);
each template is written with a male, a female and a neutral pronoun, and with the participant named or
as "someone". Scored here: the 360 sentences that name the participant ("refers to the someone" would
not read as a question).

Scoring a causal LM (the prompt lm-evaluation-harness uses for Winogender, after Brown et al. 2020):
the sentence followed by ``‘{Pronoun}’ refers to the`` is scored with ``" {occupation}"`` and
``" {participant}"``; s = log P(occupation) − log P(participant) in nats, resolved to the occupation when
s > 0. The three versions of a template differ only in the pronoun, so the candidates' own frequencies
cancel in the differences below.

Reported, the occupation being the unit (its two templates and six sentences are not independent):

* ``accuracy_<gender>``: % of sentences resolved as the template says, per pronoun gender (Wilson
  score interval, clustered by occupation);
* ``alignment``: per occupation, the female-minus-male shift s(she) − s(he) averaged over its two
  templates, signed + for occupations whose BLS share of women exceeds 50 % and − otherwise, then
  averaged over occupations (nats; Student t interval and t-test over occupations). 0 = the pronoun's gender does not
  move the reading; positive = "she" is read as the occupation more where women are the majority, and
  "he" where men are (the stereotyped reading);
* ``correlation``: Spearman ρ between an occupation's shift and its BLS share of women (Rudinger et al.
  correlate the same statistics with Pearson's r), with a permutation p-value and the Bonett–Wright
  interval (``biasaudit.stats.rank_correlation``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from biasaudit.backend.protocol import Backend
from biasaudit.data_sources import data_root, dataset_decl, locate
from biasaudit.datasets import is_hub_id, read_table
from biasaudit.errors import DatasetFormatError, InvalidRequestError
from biasaudit.stats import MIN_CI_ITEMS, Estimate, proportion, rank_correlation

GENDERS = ("male", "female", "neutral")
PRONOUNS = {  # placeholder -> pronoun per gender
    "$NOM_PRONOUN": {"male": "he", "female": "she", "neutral": "they"},
    "$POSS_PRONOUN": {"male": "his", "female": "her", "neutral": "their"},
    "$ACC_PRONOUN": {"male": "him", "female": "her", "neutral": "them"},
}
STATS_FILE = "occupations-stats.tsv"


@dataclass(frozen=True)
class WinogenderSentence:
    """One sentence: the occupation, the other participant, whom the pronoun refers to, and its gender."""

    occupation: str
    participant: str
    answer: int  # 0: the pronoun refers to the occupation, 1: to the participant
    gender: str
    text: str
    pronoun: str
    where: str

    @property
    def prompt(self) -> str:
        return f"{self.text} ‘{self.pronoun.capitalize()}’ refers to the"


def _folder(name: str, source: str | Path | None) -> Path:
    folder = locate(dataset_decl(name), data_root(source)).path
    assert folder is not None  # no hub copy is declared, so only a folder can be found
    return folder


def load_occupation_stats(source: str | Path | None = None) -> dict[str, float]:
    """Occupation -> % women (BLS 2015) from ``occupation_gender_stats/occupations-stats.tsv``."""
    path = _folder("occupation_gender_stats", source) / STATS_FILE
    out = {}
    for row in read_table(path, ["occupation", "bls_pct_female"], delimiter="\t"):
        try:
            out[row.text("occupation")] = float(row.text("bls_pct_female"))
        except ValueError:
            row.fail(f"field 'bls_pct_female' must be a number, got {row.get('bls_pct_female')!r}")
    return out


def load_winogender(source: str | Path | None = None) -> list[WinogenderSentence]:
    """The sentences that name both people, from ``all_sentences.tsv``, with each template's pronoun slot
    from ``templates.tsv`` (sentence id ``occupation.participant.answer.gender.txt``)."""
    if source is not None and is_hub_id(source):
        raise InvalidRequestError(
            f"{source!r}: Winogender is read from the authors' files (all_sentences.tsv, templates.tsv); "
            "pass the folder that holds them"
        )
    folder = _folder("winogender", source)
    slots = {}
    columns = ["occupation(0)", "other-participant(1)", "answer", "sentence"]
    for row in read_table(folder / "templates.tsv", columns, delimiter="\t"):
        found = [p for p in PRONOUNS if p in row.text("sentence")]
        if len(found) != 1:
            row.fail(f"expected one pronoun placeholder ({', '.join(PRONOUNS)}), found {found}")
        slots[(row.text("occupation(0)"), row.text("other-participant(1)"), row.text("answer"))] = found[0]
    sentences = []
    for row in read_table(folder / "all_sentences.tsv", ["sentid", "sentence"], delimiter="\t"):
        parts = row.text("sentid").split(".")
        if len(parts) != 5 or parts[2] not in ("0", "1") or parts[3] not in GENDERS:
            row.fail(f"sentence id {row.text('sentid')!r} is not occupation.participant.answer.gender.txt")
        occupation, participant, answer, gender, _ = parts
        if participant == "someone":
            continue
        if (occupation, participant, answer) not in slots:
            row.fail(f"no template in templates.tsv for {occupation}/{participant}/answer {answer}")
        pronoun = PRONOUNS[slots[(occupation, participant, answer)]][gender]
        sentences.append(
            WinogenderSentence(occupation, participant, int(answer), gender, row.text("sentence"), pronoun, row.where)
        )
    return sentences


@dataclass(frozen=True)
class WinogenderOutcome:
    """s = log P(occupation) − log P(participant) of one sentence."""

    occupation: str
    answer: int
    gender: str
    score: float

    @property
    def correct(self) -> bool:
        return (self.score > 0) == (self.answer == 0)


@dataclass
class WinogenderResult:
    params: dict[str, Any]
    overall: dict[str, dict[str, Any]]  # Estimate.to_dict() per metric; the correlation adds its p_value
    occupations: dict[str, dict[str, float]]  # per occupation: its shift (nats) and BLS % women
    items: list[WinogenderOutcome] = field(repr=False)

    def to_dict(self, include_items: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "benchmark": "winogender",
            "params": self.params,
            "overall": self.overall,
            "occupations": self.occupations,
        }
        if include_items:
            out["items"] = [vars(o) for o in self.items]
        return out


def occupation_shifts(outcomes: Sequence[WinogenderOutcome]) -> dict[str, float]:
    """Per occupation: s(she) − s(he), averaged over its templates (nats)."""
    by_template: dict[tuple[str, int], dict[str, float]] = {}
    for o in outcomes:
        by_template.setdefault((o.occupation, o.answer), {})[o.gender] = o.score
    shifts: dict[str, list[float]] = {}
    for (occupation, _), scores in by_template.items():
        if "female" in scores and "male" in scores:
            shifts.setdefault(occupation, []).append(scores["female"] - scores["male"])
    return {k: float(np.mean(v)) for k, v in sorted(shifts.items())}


def mean_with_t_interval(values: np.ndarray, unit: str) -> dict[str, Any]:
    """The mean, its Student t interval and the one-sample t-test p-value (``scipy.stats.ttest_1samp``),
    in ``Estimate.to_dict()`` shape. A t interval rather than a bootstrap: at 12 occupations the BCa
    bootstrap covered 89 % in simulation, the t interval its nominal 95 % (tests/stats)."""
    n = len(values)
    if n == 0:
        return Estimate(None, None, 0, "no items").to_dict()
    mean = float(np.mean(values))
    if n < MIN_CI_ITEMS:
        return Estimate(mean, None, n, f"only {n} {unit}: too few for a 95% interval (need {MIN_CI_ITEMS})").to_dict()
    if np.ptp(values) == 0:
        return {**Estimate(mean, (mean, mean), n).to_dict(), "p_value": 1.0 if mean == 0 else 0.0}
    test = sps.ttest_1samp(values, 0.0)
    interval = test.confidence_interval(0.95)
    return {**Estimate(mean, (float(interval.low), float(interval.high)), n).to_dict(), "p_value": float(test.pvalue)}


def scores(outcomes: Sequence[WinogenderOutcome], pct_female: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The reported estimates (module docstring; ``Estimate.to_dict()`` shape, the correlation with its
    ``p_value``) from scored sentences and the occupations' statistics."""
    clusters = np.array([o.occupation for o in outcomes], dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for gender in GENDERS:
        at = [i for i, o in enumerate(outcomes) if o.gender == gender]
        out[f"accuracy_{gender}"] = proportion(
            np.array([outcomes[i].correct for i in at], dtype=bool),
            clusters=clusters[at],
            unit="sentences",
            cluster_unit="occupation",
        ).to_dict()
    shifts = occupation_shifts(outcomes)
    signed = [shift if pct_female[o] > 50 else -shift for o, shift in shifts.items() if pct_female[o] != 50]
    out["alignment"] = mean_with_t_interval(np.array(signed), unit="occupations")
    names = list(shifts)
    if len(names) < 3 or np.ptp([shifts[o] for o in names]) == 0:
        out["correlation"] = Estimate(None, None, len(names), "fewer than 3 occupations, or no shift varies").to_dict()
        return out
    rho = rank_correlation(np.array([shifts[o] for o in names]), np.array([pct_female[o] for o in names]))
    low, high = rho["ci_low"], rho["ci_high"]
    ci = None if low is None or high is None else (float(low), float(high))
    note = None if ci else f"only {len(names)} occupations: too few for a 95% interval"
    correlation = Estimate(float(rho["rho"] or 0.0), ci, len(names), note)
    out["correlation"] = {**correlation.to_dict(), "p_value": rho["p_value"]}
    return out


class Winogender:
    """Winogender on any backend.

    Parameters
    ----------
    limit: score at most this many occupations (a seeded subset; each brings its 6 sentences). None: all 60.
    seed: seed of that subset.
    apply_chat_template: put each prompt in the model's chat template.
    """

    def __init__(self, *, limit: int | None = None, seed: int = 0, apply_chat_template: bool = False) -> None:
        self.limit = limit
        self.seed = seed
        self.apply_chat_template = apply_chat_template

    def evaluate(self, backend: Backend, source: str | Path | None = None) -> WinogenderResult:
        sentences = load_winogender(source)
        pct_female = load_occupation_stats(source)
        missing = sorted({s.occupation for s in sentences} - set(pct_female))
        if missing:
            raise DatasetFormatError(f"{STATS_FILE} has no statistics for occupations {missing}")
        occupations = sorted({s.occupation for s in sentences})
        if not occupations:
            raise InvalidRequestError(f"no Winogender sentences to score (source={source})")
        if self.limit is not None and self.limit < len(occupations):
            occupations = sorted(random.Random(self.seed).sample(occupations, self.limit))
        keep = set(occupations)
        sentences = [s for s in sentences if s.occupation in keep]
        requests = [(s.prompt, " " + who) for s in sentences for who in (s.occupation, s.participant)]
        results = backend.loglikelihood(requests, apply_chat_template=self.apply_chat_template)
        lls = np.array([r.logprob for r in results], dtype=np.float64).reshape(len(sentences), 2)
        outcomes = [
            WinogenderOutcome(s.occupation, s.answer, s.gender, float(ll[0] - ll[1]))
            for s, ll in zip(sentences, lls, strict=True)
        ]
        shifts = occupation_shifts(outcomes)
        params = {
            "limit": self.limit,
            "seed": self.seed,
            "apply_chat_template": self.apply_chat_template,
            "source": str(source) if source is not None else None,
            "n_occupations": len(occupations),
            "prompt": "{sentence} ‘{Pronoun}’ refers to the + ' ' + occupation | participant (lm-eval winogender)",
            "interval": "over occupations: Wilson with clustering (accuracies), t (alignment), Bonett-Wright (rho)",
        }
        return WinogenderResult(
            params=params,
            overall=scores(outcomes, pct_female),
            occupations={o: {"shift": shifts[o], "bls_pct_female": pct_female[o]} for o in shifts},
            items=outcomes,
        )
