"""The ``icl`` audit suite: few-shot label bias and the gains of CC, DC and BC on the five shipped tasks.

A short version of ``benchmarks/icl_calibration.py``'s protocol (8-shot, two demonstration seeds);
definitions in ``docs/calibration.md`` and ``docs/methods.md`` §2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from biasaudit.suite import Finding, SkippedResult, SuiteResult, effect_from_estimate, register_suite

if TYPE_CHECKING:
    from biasaudit.audit.config import RunConfig
    from biasaudit.backend.protocol import Backend

SHOTS = 8
# The label-bias measures read as findings, and how each reads in a sentence.
BIAS_READING = {
    "vanilla": "favours some label names before seeing any demonstration (TV distance of its content-free prior "
    "from uniform)",
    "context": "changes its label prior with the choice of demonstrations (mean TV distance between "
    "demonstration sets)",
    "domain": "shifts its label prior on in-domain text with no label signal (KL from the prior on common "
    "English words)",
}


@dataclass
class ICLResult(SuiteResult):
    """Per task: Macro-F1 per method at ``SHOTS`` shots (mean over seeds) and the label-bias measures."""

    suite: ClassVar[str] = "icl"
    metrics: ClassVar[tuple[str, ...]] = ("vanilla", "context", "domain", "predicted_label_skew", "recall_spread")
    protocol: dict[str, Any]
    data_dir: str
    macro_f1_gain_vs_none: dict[str, dict[str, float]]
    tasks: dict[str, dict[str, Any]]

    def headline(self) -> str:
        parts = []
        for task, gains in self.macro_f1_gain_vs_none.items():
            base = self.tasks[task]["summary"][str(SHOTS)]["none"]["macro_f1_mean"]
            best = max(gains, key=lambda method: gains[method])
            # The calibrated F1 itself, then the gain: "+0.86" alone read as a gain larger than 1 - base.
            parts.append(f"{task} F1 {base:.2f} -> {base + gains[best]:.2f} ({best.upper()} {gains[best]:+.2f})")
        return "; ".join(parts)

    def effects(self) -> list[Finding]:
        """Each label-bias measure per task against 0 (the distances are 0 only without bias)."""
        out: list[Finding] = []
        for task, result in self.tasks.items():
            for measure, what in BIAS_READING.items():

                def reading(value: float, ci: tuple[float, float], task: str = task, what: str = what) -> str:
                    return f"On {task} the model {what}: {value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]."

                found = effect_from_estimate(
                    self.suite, f"{measure}_label_bias[{task}]", result["bias"].get(measure), 0.0, reading
                )
                out.extend([found] if found else [])
        return out


@register_suite(
    "icl",
    "Few-shot label bias (vanilla, context, domain) and calibration gains (CC, DC, BC) on 5 tasks",
    ICLResult,
    data=("fewshot_cls",),
    probes=("icl",),
)
def run_icl_suite(backend: Backend, config: RunConfig) -> ICLResult | SkippedResult:
    from biasaudit.calibration.evaluate import ICLEvalConfig, evaluate_icl
    from biasaudit.data_sources import data_root
    from biasaudit.errors import DatasetNotFoundError

    data_dir = data_root(config.data_dir)  # None: the tasks' hub copies, where the hub is reachable
    eval_config = ICLEvalConfig(shots=[SHOTS], seeds=[config.seed, config.seed + 1], n_test=config.limit or 100)
    try:
        tasks = evaluate_icl(backend, eval_config, data_dir)
    except DatasetNotFoundError as exc:
        return SkippedResult(str(exc))
    gains = {
        name: {
            method: row[method]["macro_f1_mean"] - row["none"]["macro_f1_mean"]
            for method in eval_config.methods
            if method != "none"
        }
        for name, result in tasks.items()
        for row in [result["summary"][str(SHOTS)]]
    }
    source = str(data_dir) if data_dir else "hub"
    return ICLResult(protocol=eval_config.to_dict(), data_dir=source, macro_f1_gain_vs_none=gains, tasks=tasks)
