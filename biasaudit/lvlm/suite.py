"""The ``lvlm`` audit suite: a vision-language model's language prior, and what each mitigation changes.

It runs when the audited model is a vision-language model (``biasaudit audit`` detects one from its
config); ``biasaudit lvlm`` runs the same evaluation with every option exposed. Definitions:
``docs/lvlm.md`` and ``docs/methods.md`` §3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from biasaudit.suite import Finding, SuiteResult, effect_from_estimate, register_suite

if TYPE_CHECKING:
    from biasaudit.audit.config import RunConfig
    from biasaudit.backend.protocol import VisionBackend
    from biasaudit.lvlm.probe import ProbeItem

PROBE = "pope"
N_QUESTIONS = 300
# What each method's answers are, in a finding's sentence.
METHOD_READING = {
    "blind": "without the image",
    "none": "with the image",
    "greedy": "generating its answer with the image",
    "posthoc": "after post-hoc debias",
    "sampling": "with debiased decoding",
    "vcd": "with visual contrastive decoding",
}


@dataclass
class LVLMResult(SuiteResult):
    """``LVLMEvaluator.to_dict(include_predictions=True)`` with the probe and model it ran on.

    ``results[method][split]`` holds accuracy, yes-ratio (with 95 % CIs) and, for a mitigation, its
    paired ``accuracy_change`` against its peer; ``predictions`` is one record per probe item.
    """

    suite: ClassVar[str] = "lvlm"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "yes_ratio", "accuracy_change")
    model: str
    fingerprint: str
    probe: str
    n_items: int
    seed: int
    image_size: int
    text_only_supported: bool
    method: str
    config: dict[str, Any]
    results: dict[str, dict[str, dict[str, Any]]]
    posthoc: dict[str, Any]
    predictions: list[dict[str, Any]]

    def headline(self) -> str:
        parts = []
        for method, by_split in self.results.items():
            metrics = by_split.get("all") or {}
            if metrics.get("accuracy") is None:
                continue
            text = f"{method} acc {metrics['accuracy']:.2f}"
            if metrics.get("yes_ratio") is not None:
                text += f", yes {metrics['yes_ratio']:.0%}"
            parts.append(text)
        return "; ".join(parts)

    def effects(self) -> list[Finding]:
        """Per method on all items: the yes-ratio against the gold yes-ratio, and the paired accuracy change
        against the method's peer against 0."""
        out: list[Finding] = []
        for method, by_split in self.results.items():
            metrics = by_split.get("all") or {}
            how = METHOD_READING.get(method, f"with {method}")
            gold = metrics.get("gold_yes_ratio")
            if gold is not None:

                def yes_reading(value: float, ci: tuple[float, float], how: str = how, gold: float = gold) -> str:
                    return (
                        f"The model answers Yes to {value:.0%} [{ci[0]:.0%}, {ci[1]:.0%}] of the probe's questions "
                        f"{how}; {gold:.0%} are Yes."
                    )

                estimate = {"value": metrics.get("yes_ratio"), "ci95": metrics.get("yes_ratio_ci"), "n": metrics["n"]}
                found = effect_from_estimate(self.suite, f"yes_ratio[{method}]", estimate, gold, yes_reading)
                out.extend([found] if found else [])
            change = metrics.get("accuracy_change")
            if change:

                def change_reading(
                    value: float, ci: tuple[float, float], how: str = how, vs: str = change["vs"]
                ) -> str:
                    return f"Accuracy {how} differs by {value:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] from {vs}'s."

                estimate = {"value": change["delta"], "ci95": change.get("ci"), "n": change["n"]}
                found = effect_from_estimate(self.suite, f"accuracy_change[{method}]", estimate, 0.0, change_reading)
                out.extend([found] if found else [])
        return out

    def samples(self) -> list[dict[str, Any]]:
        return [{"kind": "item", **row} for row in self.predictions]


def evaluate_lvlm(
    backend: VisionBackend,
    items: list[ProbeItem],
    *,
    probe: str,
    seed: int,
    image_size: int,
    **params: Any,
) -> LVLMResult:
    """Fit ``LVLMEvaluator(seed=seed, **params)`` on ``items``: the path the suite and ``biasaudit lvlm`` share."""
    from biasaudit.lvlm.evaluate import LVLMEvaluator

    evaluator = LVLMEvaluator(seed=seed, **params).fit(backend, items)
    return LVLMResult(
        model=backend.name,
        fingerprint=backend.fingerprint,
        probe=probe,
        n_items=len(items),
        seed=seed,
        image_size=image_size,
        text_only_supported=bool(getattr(backend, "text_only_supported", True)),
        **evaluator.to_dict(include_predictions=True),
    )


@register_suite(
    "lvlm",
    "Vision-language models: how far answers follow the language prior (image-free answers), and what "
    "post-hoc debias and debiased decoding change, on a procedural POPE-style probe",
    LVLMResult,
    backend="vlm",
)
def run_lvlm_suite(backend: VisionBackend, config: RunConfig) -> LVLMResult:
    from biasaudit.lvlm.probe import make_probe

    image_size = 224
    items = make_probe(PROBE, config.limit or N_QUESTIONS, seed=config.seed, image_size=image_size)
    return evaluate_lvlm(backend, items, probe=PROBE, seed=config.seed, image_size=image_size)
