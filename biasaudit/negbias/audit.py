"""Build a negative-bias set for a model and evaluate it, in one call (the ``negbias`` audit suite, the
benchmark and users who want both steps at once)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from biasaudit.backend.protocol import Backend
from biasaudit.jsonio import dataclass_from_dict
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
    apply_chat_template: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NegBiasAuditConfig:
        values = dict(data)
        values["build"] = NegBiasSetConfig.from_dict(values.get("build", {}))
        return dataclass_from_dict(cls, values, "negbias audit config")


def run_negbias(
    backend: Backend, config: NegBiasAuditConfig, *, progress: bool = True, samples: bool = False
) -> dict[str, Any]:
    """Probe, build and evaluate; returns the config, the set's summary and the evaluator's results.

    ``samples`` adds ``"samples"``: every probed question with its probe and items, and every prediction
    (chain-of-thought replies included), as ``negbias_samples`` builds them -- enough to audit the
    parsing and matching and to re-score without the model.
    """
    qa_sources, questions, native = load_inputs(config.qa, config.yesno, config.limit)
    builder = NegBiasSetBuilder(config.build, progress=progress).fit(backend, qa=questions, yesno=native)
    kwargs: dict[str, Any] = {}
    if config.scenarios:
        kwargs["scenarios"] = tuple(config.scenarios)
    evaluator = NegBiasEvaluator(
        seed=config.build.seed, cot_max_new_tokens=config.cot_max_new_tokens,
        apply_chat_template=config.apply_chat_template, progress=progress, **kwargs,
    ).fit(backend, builder.items_)  # fmt: skip
    evaluation = evaluator.to_dict()
    evaluation["evaluation_config"] = evaluation.pop("config")
    out = {
        "config": config.to_dict(),
        "sources": {"qa": qa_sources, "yesno": list(config.yesno)},
        "set": builder.summary_,
        **evaluation,
    }
    if samples:
        out["samples"] = negbias_samples(builder, evaluator)
    return out


def _rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def negbias_samples(builder: NegBiasSetBuilder, evaluator: NegBiasEvaluator) -> dict[str, list[dict[str, Any]]]:
    """What a fitted build and evaluation saw, compactly: ``{"questions": [...], "predictions": [...]}``.

    questions: one row per probed question (those dropped to balance a subset included, with no items):
        its id, text, gold answers, probe (greedy and sampled answers, verdict, subset) and items
        ({item id: candidate, label, kind}).
    predictions: ``ScenarioPrediction.to_dict()`` rows, probabilities rounded to 4 decimals; a
        ``ScenarioPrediction(**row)`` again.
    """
    items: dict[str, dict[str, Any]] = {}
    text: dict[str, tuple[str, list[str]]] = {}
    for item in builder.items_:
        items.setdefault(item.source_id, {})[item.id] = {
            "candidate": item.candidate, "label": item.label, "kind": item.kind
        }  # fmt: skip
        text[item.source_id] = (item.question, item.gold_answers)
    questions = [
        {
            "question_id": qid,
            "question": text.get(qid, (None, []))[0],
            "gold_answers": text.get(qid, (None, []))[1],
            "probe": probe.to_dict(),
            "items": items.get(qid, {}),
        }
        for qid, probe in builder.probes_.items()
    ]
    predictions = [{k: _rounded(v) for k, v in p.to_dict().items()} for p in evaluator.predictions_]
    return {"questions": questions, "predictions": predictions}
