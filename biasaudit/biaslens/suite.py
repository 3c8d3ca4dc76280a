"""The ``biaslens`` audit suite: test-set-free bias scores per probe and per bias category.

Scores, their half-sample intervals and p-values: ``docs/biaslens.md`` and ``docs/methods.md`` §1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from biasaudit.suite import Finding, SuiteResult, effect_from_estimate, register_suite

if TYPE_CHECKING:
    from biasaudit.audit.config import RunConfig
    from biasaudit.backend.protocol import Backend

# The audit's examples per concept (fewer with --limit).
N_EXAMPLES = 200


@dataclass
class BiasLensSuiteResult(SuiteResult):
    """``BiasLensAudit.to_dict()``: per category a score (positive = stereotype-consistent), CI and p-value."""

    suite: ClassVar[str] = "biaslens"
    metrics: ClassVar[tuple[str, ...]] = ("score_residual", "score_sae")
    config: dict[str, Any]
    layers: list[int]
    categories: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    concepts: Any
    sae_concepts: dict[str, Any]

    def headline(self) -> str:
        scored = [c for c in self.categories if c["score"] is not None]
        parts = [f"{c['category']} {c['score']:+.3f}" for c in scored]
        unscored = len(self.categories) - len(scored)
        return "; ".join(parts) + (f" ({unscored} categories not readable)" if unscored else "")

    def effects(self) -> list[Finding]:
        """Each category score (residual stream, and SAE latents when scored there) against 0."""
        out: list[Finding] = []
        for category in self.categories:
            for score in (category, category.get("sae")):
                if not score or score.get("score") is None:
                    continue
                name, space = score["category"], score.get("space", "residual")

                def reading(value: float, ci: tuple[float, float], name: str = name, space: str = space) -> str:
                    side = "the group its stereotype names" if value > 0 else "the other group of each pair"
                    return (
                        f"In its {space} concept space the model places {name} targets nearer {side}: "
                        f"score {value:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] (0 = no association)."
                    )

                estimate = {"value": score["score"], "ci95": score.get("ci"), "n": score.get("n_scored")}
                found = effect_from_estimate(
                    self.suite, f"score[{name}/{space}]", estimate, 0.0, reading, score.get("p_value")
                )
                out.extend([found] if found else [])
        return out

    def samples(self) -> list[dict[str, Any]]:
        return [{"kind": "probe", **probe} for probe in self.probes]


@register_suite(
    "biaslens",
    "BiasLens: test-set-free bias from concept vectors (CAVs), per probe and per bias category",
    BiasLensSuiteResult,
    probes=("biaslens", "concepts"),
)
def run_biaslens_suite(backend: Backend, config: RunConfig) -> BiasLensSuiteResult:
    from biasaudit.biaslens.audit import BiasLensAudit, BiasLensConfig

    n = min(N_EXAMPLES, config.limit) if config.limit else N_EXAMPLES
    lens_config = BiasLensConfig(n_examples=n, n_generic=n, seed=config.seed, sae=config.sae)
    return BiasLensSuiteResult.from_dict(BiasLensAudit(lens_config).run(backend).to_dict())
