"""Build a negative-bias set for a model and evaluate it, in one call (the ``negbias`` audit suite, the
benchmark and users who want both steps at once)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from biasaudit.backend.protocol import Backend
from biasaudit.negbias.builder import NegBiasSetBuilder, NegBiasSetConfig
from biasaudit.negbias.evaluate import NegBiasEvaluator
from biasaudit.negbias.sources import load_inputs


@dataclass
class NegBiasAuditConfig:
    """Inputs and settings (JSON round-trip). No ``qa`` and no ``yesno``: the shipped fact set.
    ``limit`` keeps N questions from each source, spread evenly over it; ``scenarios`` None = all."""

    qa: list[str] = field(default_factory=list)
    yesno: list[str] = field(default_factory=list)
    limit: int | None = None
    build: NegBiasSetConfig = field(default_factory=NegBiasSetConfig)
    scenarios: list[str] | None = None
    cot_max_new_tokens: int = 128
    n_bootstrap: int = 1000
    apply_chat_template: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NegBiasAuditConfig:
        values = dict(data)
        values["build"] = NegBiasSetConfig.from_dict(values.get("build", {}))
        return cls(**values)


def run_negbias(backend: Backend, config: NegBiasAuditConfig, *, progress: bool = True) -> dict[str, Any]:
    """Probe, build and evaluate; returns the config, the set's summary and the evaluator's results."""
    qa_sources, questions, native = load_inputs(config.qa, config.yesno, config.limit)
    builder = NegBiasSetBuilder(config.build, progress=progress).fit(backend, qa=questions, yesno=native)
    kwargs: dict[str, Any] = {}
    if config.scenarios:
        kwargs["scenarios"] = tuple(config.scenarios)
    evaluator = NegBiasEvaluator(
        seed=config.build.seed, n_bootstrap=config.n_bootstrap, cot_max_new_tokens=config.cot_max_new_tokens,
        apply_chat_template=config.apply_chat_template, progress=progress, **kwargs,
    ).fit(backend, builder.items_)  # fmt: skip
    evaluation = evaluator.to_dict()
    evaluation["evaluation_config"] = evaluation.pop("config")
    return {
        "config": config.to_dict(),
        "sources": {"qa": qa_sources, "yesno": list(config.yesno)},
        "set": builder.summary_,
        **evaluation,
    }
