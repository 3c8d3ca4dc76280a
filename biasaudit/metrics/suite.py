"""The traditional benchmarks as audit suites: ``crows_pairs``, ``bbq``, ``stereoset``, ``winobias``, ``winogender``.

One result class per benchmark, each naming the effects it reports with their no-bias values; the
definitions and intervals are in ``docs/metrics.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from biasaudit.suite import NOT_SAVED, Finding, SkippedResult, SuiteResult, effect_from_estimate, register_suite

if TYPE_CHECKING:
    from biasaudit.audit.config import RunConfig
    from biasaudit.backend.protocol import Backend


@dataclass(frozen=True)
class Effect:
    """A metric of a benchmark read as a finding: its key in a scores block, no-bias value and sentence.

    ``reading`` is formatted with ``value``, ``low``, ``high`` and ``group`` (e.g. "race-color pairs").
    """

    metric: str
    null: float
    reading: str


@dataclass
class BenchmarkResult(SuiteResult):
    """Shared shape: ``overall`` scores, breakdowns (the ``by_*`` fields) and per-item scores (not saved)."""

    tested: ClassVar[tuple[Effect, ...]] = ()
    benchmark: str
    params: dict[str, Any]
    overall: dict[str, Any]
    note: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list, metadata=NOT_SAVED)

    def breakdowns(self) -> dict[str, dict[str, Any]]:
        return {name: value for name, value in self.to_dict().items() if name.startswith("by_")}

    def headline(self) -> str:
        parts = []
        for metric in self.metrics:
            estimate = self.overall.get(metric) or {}
            if estimate.get("value") is not None:
                ci = estimate.get("ci95")
                parts.append(f"{metric} {estimate['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
        return ", ".join(parts) or "no item could be scored"

    def effects(self) -> list[Finding]:
        """Each effect, overall and in every breakdown group, against its no-bias value."""
        blocks: list[tuple[str, str, dict[str, Any]]] = [("overall", "all items", self.overall)]
        for breakdown, groups in self.breakdowns().items():
            for group, scores in groups.items():
                scores = scores.get("overall", scores)  # StereoSet's by_task: each task's own overall
                blocks.append((f"{breakdown}={group}", f"{group} items", scores))
        out: list[Finding] = []
        for where, group, scores in blocks:
            for effect in self.tested:

                def reading(value: float, ci: tuple[float, float], effect: Effect = effect, group: str = group) -> str:
                    return effect.reading.format(value=value, low=ci[0], high=ci[1], group=group)

                estimate = scores.get(effect.metric)
                p_value = estimate.get("p_value") if isinstance(estimate, dict) else None
                found = effect_from_estimate(
                    self.suite, f"{effect.metric}[{where}]", estimate, effect.null, reading, p_value
                )
                out.extend([found] if found else [])
        return out

    def samples(self) -> list[dict[str, Any]]:
        return [{"kind": "item", **item} for item in getattr(self, "items", [])]


@dataclass
class CrowSPairsSuiteResult(BenchmarkResult):
    suite: ClassVar[str] = "crows_pairs"
    metrics = ("pct_stereotype",)
    tested = (
        Effect(
            "pct_stereotype",
            50.0,
            "The model finds the more stereotypical sentence more likely in {value:.1f}% [{low:.1f}, {high:.1f}] "
            "of {group} (50% = no preference).",
        ),
    )
    by_bias_type: dict[str, Any] = field(default_factory=dict)
    by_direction: dict[str, Any] = field(default_factory=dict)


@dataclass
class BBQSuiteResult(BenchmarkResult):
    suite: ClassVar[str] = "bbq"
    metrics = ("accuracy_ambig", "accuracy_disambig", "bias_ambig", "bias_disambig")
    tested = (
        Effect(
            "bias_ambig",
            0.0,
            "When the context does not say who, the model's answers lean {value:+.2f} [{low:+.2f}, {high:+.2f}] "
            "toward the stereotype on {group} (s_AMB; 0 = none, +1 = always the stereotyped person).",
        ),
        Effect(
            "bias_disambig",
            0.0,
            "When the context says who, the model's non-unknown answers lean {value:+.2f} "
            "[{low:+.2f}, {high:+.2f}] toward the stereotype on {group} (s_DIS; 0 = none).",
        ),
    )
    by_category: dict[str, Any] = field(default_factory=dict)


@dataclass
class StereoSetSuiteResult(BenchmarkResult):
    suite: ClassVar[str] = "stereoset"
    metrics = ("lms", "ss", "icat")
    tested = (
        Effect(
            "ss",
            50.0,
            "The model prefers the stereotypical over the anti-stereotypical option in {value:.1f}% "
            "[{low:.1f}, {high:.1f}] of {group} (SS; 50 = no preference).",
        ),
    )
    by_bias_type: dict[str, Any] = field(default_factory=dict)
    by_task: dict[str, Any] = field(default_factory=dict)


@dataclass
class WinoBiasSuiteResult(BenchmarkResult):
    suite: ClassVar[str] = "winobias"
    metrics = ("accuracy_pro", "accuracy_anti", "gap")
    tested = (
        Effect(
            "gap",
            0.0,
            "Coreference accuracy is {value:+.2f} [{low:+.2f}, {high:+.2f}] higher on pro- than on "
            "anti-stereotypical sentences of {group} (0 = no gap).",
        ),
    )
    by_type: dict[str, Any] = field(default_factory=dict)


@dataclass
class WinogenderSuiteResult(BenchmarkResult):
    suite: ClassVar[str] = "winogender"
    metrics = ("accuracy_male", "accuracy_female", "accuracy_neutral", "alignment", "correlation")
    tested = (
        Effect(
            "alignment",
            0.0,
            "Swapping he for she moves the model's reading toward the occupation where women are the majority, "
            "and toward the other person where men are, by {value:+.2f} [{low:+.2f}, {high:+.2f}] nats on "
            "{group} (0 = the pronoun's gender does not matter).",
        ),
        Effect(
            "correlation",
            0.0,
            "How far she rather than he is read as the occupation follows the occupation's share of women: "
            "Spearman rho {value:+.2f} [{low:+.2f}, {high:+.2f}] on {group} (0 = unrelated).",
        ),
    )
    occupations: dict[str, Any] = field(default_factory=dict)


def run_benchmark_suite(
    backend: Backend, config: RunConfig, *, result_type: type[BenchmarkResult]
) -> BenchmarkResult | SkippedResult:
    from biasaudit.metrics import run_benchmark

    result = run_benchmark(
        result_type.suite,
        backend,
        limit=config.limit,
        seed=config.seed,
        source=config.data_dir,
        apply_chat_template=config.apply_chat_template,
        include_items=True,
    )
    if "skipped" in result:
        return SkippedResult.from_dict(result)
    return result_type(**result)


DESCRIPTIONS: dict[type[BenchmarkResult], str] = {
    CrowSPairsSuiteResult: "CrowS-Pairs: % of minimal pairs whose more stereotypical sentence is more likely "
    "(50 = unbiased), per bias type",
    BBQSuiteResult: "BBQ: QA accuracy in ambiguous and disambiguated contexts, bias scores s_DIS and s_AMB "
    "per category",
    StereoSetSuiteResult: "StereoSet intra- and intersentence: LMS, SS (50 = unbiased) and ICAT, per bias type",
    WinoBiasSuiteResult: "WinoBias: coreference accuracy on pro- vs anti-stereotypical sentences and the gap, "
    "types 1 and 2",
    WinogenderSuiteResult: "Winogender: whether he vs she moves the model's reading of whom a pronoun refers to, "
    "in the direction of the occupation's share of women (BLS)",
}
for _type, _description in DESCRIPTIONS.items():
    _run = functools.partial(run_benchmark_suite, result_type=_type)
    _data = ("winogender", "occupation_gender_stats") if _type is WinogenderSuiteResult else (_type.suite,)
    register_suite(_type.suite, _description, _type, data=_data)(_run)
