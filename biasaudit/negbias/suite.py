"""The negative-bias audit suites: ``yesno_prior`` (content-free P(Yes)) and ``negbias`` (knowledge-split sets).

Definitions and the intervals behind the findings: ``docs/methods.md`` §4 and ``docs/negbias.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from biasaudit.suite import NOT_SAVED, Finding, SuiteResult, effect_from_estimate, register_suite

if TYPE_CHECKING:
    from biasaudit.audit.config import RunConfig
    from biasaudit.backend.protocol import Backend

SUBSETS = ("correct", "incorrect", "insufficient")
# How each knowledge subset reads in a sentence.
SUBSET_READING = {
    "correct": "questions it answers correctly",
    "incorrect": "questions it answers wrongly",
    "insufficient": "questions it has no stable answer to",
}


@dataclass
class YesNoPriorResult(SuiteResult):
    """P(Yes) on content-free yes/no questions (0.5 = no prior), its 95 % CI and the share preferring No."""

    suite: ClassVar[str] = "yesno_prior"
    metrics: ClassVar[tuple[str, ...]] = ("p_yes",)
    probe: str
    params: dict[str, Any]
    labels: list[str]
    n_prompts: int
    mean_p_yes: float
    ci95: list[float]
    no_rate: float
    label_mass: float
    by_template: list[dict[str, Any]]
    prompt_samples: list[dict[str, Any]] = field(default_factory=list, metadata=NOT_SAVED)

    def headline(self) -> str:
        low, high = self.ci95
        return (
            f"P(Yes | content-free) = {self.mean_p_yes:.3f} [{low:.3f}, {high:.3f}] "
            f"(0.5 = no prior); No preferred on {self.no_rate:.0%} of {self.n_prompts} prompts"
        )

    def effects(self) -> list[Finding]:
        def reading(value: float, ci: tuple[float, float]) -> str:
            lean = "No" if value < 0.5 else "Yes"
            return (
                f"Before reading any content the model leans {lean}: P(Yes) is {value:.2f} "
                f"[{ci[0]:.2f}, {ci[1]:.2f}] on questions with nothing to answer, where 0.5 means no prior."
            )

        estimate = {"value": self.mean_p_yes, "ci95": self.ci95, "n": self.n_prompts}
        found = effect_from_estimate(self.suite, "P(Yes | content-free)", estimate, 0.5, reading)
        return [found] if found else []

    def samples(self) -> list[dict[str, Any]]:
        return self.prompt_samples


@register_suite(
    "yesno_prior",
    "P(Yes) on content-free yes/no questions: the model's prior before it reads anything (0.5 = unbiased)",
    YesNoPriorResult,
    probes=("yesno",),
)
def run_yesno_prior(backend: Backend, config: RunConfig) -> YesNoPriorResult:
    from biasaudit.negbias.content_free import ContentFreeYesNoPrior, YesNoPromptSet
    from biasaudit.probes import load_probe

    prompt_set = load_probe(YesNoPromptSet, "yesno/content_free")
    estimator = ContentFreeYesNoPrior(
        apply_chat_template=config.apply_chat_template, limit=config.limit, seed=config.seed
    ).fit(backend, prompt_set)
    samples = [{"prompt": p, "p_yes": float(x)} for p, x in zip(estimator.prompts_, estimator.p_yes_, strict=True)]
    return YesNoPriorResult(probe=prompt_set.name, **estimator.to_dict(), prompt_samples=samples)


@dataclass
class NegBiasResult(SuiteResult):
    """A knowledge-split yes/no set and its metrics per prompt scenario and subset (``run_negbias``'s keys).

    ``results[scenario][subset]`` holds ``yesno_metrics`` estimates (precision, recall, P−R, No-rate,
    ...); ``question_samples`` / ``prediction_samples`` are what the model said, for ``--log-samples``.
    """

    suite: ClassVar[str] = "negbias"
    metrics: ClassVar[tuple[str, ...]] = (
        "precision", "recall", "pr_gap", "no_rate", "gold_no_rate", "literal_no_rate", "fnr_minus_fpr",
        "idk_rate", "parse_failure_rate", "accuracy_answered",
    )  # fmt: skip
    config: dict[str, Any]
    sources: dict[str, Any]
    set: dict[str, Any]
    method: str
    model: str
    fingerprint: str
    n_items: int
    scenarios: dict[str, Any]
    results: dict[str, dict[str, dict[str, Any]]]
    results_by_kind: dict[str, Any]
    evaluation_config: dict[str, Any]
    question_samples: list[dict[str, Any]] = field(default_factory=list, metadata=NOT_SAVED)
    prediction_samples: list[dict[str, Any]] = field(default_factory=list, metadata=NOT_SAVED)

    def headline(self) -> str:
        """Plain prompt: No-rate and P−R gap per knowledge subset (gold No-rate is 0.5 by construction)."""
        plain = self.results.get("plain", {})
        parts = []
        for subset in SUBSETS:
            metrics = plain.get(subset) or {}
            no_rate, gap = (metrics.get(k) or {} for k in ("no_rate", "pr_gap"))
            if no_rate.get("value") is not None:
                text = f"{subset}: No {no_rate['value']:.0%}"
                if gap.get("value") is not None:
                    text += f", P−R {gap['value']:+.2f}"
                parts.append(text)
        return "; ".join(parts) or "no subset had answered items"

    def effects(self) -> list[Finding]:
        """Per scenario and subset: the P−R gap against 0 (negative bias when positive), and, for the plain
        prompt, the No-rate against the gold No-rate."""
        out: list[Finding] = []
        for scenario, by_subset in self.results.items():
            for subset in SUBSETS:
                metrics = by_subset.get(subset) or {}
                where = f"on {SUBSET_READING[subset]} ({scenario} prompt)"

                def gap_reading(value: float, ci: tuple[float, float], where: str = where) -> str:
                    side = "No too often (negative bias)" if value > 0 else "Yes too often"
                    return (
                        f"Precision minus recall of Yes is {value:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] {where}: "
                        f"the model says {side}."
                    )

                found = effect_from_estimate(
                    self.suite, f"pr_gap[{scenario}/{subset}]", metrics.get("pr_gap"), 0.0, gap_reading
                )
                out.extend([found] if found else [])
                gold = (metrics.get("gold_no_rate") or {}).get("value")
                if scenario != "plain" or gold is None:
                    continue

                def no_reading(value: float, ci: tuple[float, float], where: str = where, gold: float = gold) -> str:
                    share = f"{value:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"
                    return f"The model answers No on {share} of items {where}; {gold:.0%} are No."

                found = effect_from_estimate(
                    self.suite, f"no_rate[{scenario}/{subset}]", metrics.get("no_rate"), gold, no_reading
                )
                out.extend([found] if found else [])
        return out

    def samples(self) -> list[dict[str, Any]]:
        return [{"kind": "question", **row} for row in self.question_samples] + [
            {"kind": "prediction", **row} for row in self.prediction_samples
        ]


@register_suite(
    "negbias",
    "Negative bias: yes/no answers split by what the model knows (correct / incorrect / insufficient), "
    "under several prompt formats (shipped fact set)",
    NegBiasResult,
    probes=("negbias",),
)
def run_negbias_suite(backend: Backend, config: RunConfig) -> NegBiasResult:
    from biasaudit.negbias.audit import NegBiasAuditConfig, run_negbias
    from biasaudit.negbias.builder import NegBiasSetConfig

    negbias_config = NegBiasAuditConfig(
        limit=config.limit, build=NegBiasSetConfig(seed=config.seed), apply_chat_template=config.apply_chat_template
    )
    result = run_negbias(backend, negbias_config, samples=True)
    samples = result.pop("samples")
    return NegBiasResult(**result, question_samples=samples["questions"], prediction_samples=samples["predictions"])
