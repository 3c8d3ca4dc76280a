"""The suite registry: each suite turns a backend and a run config into a JSON-ready result.

A method package registers its suite here with ``@register_suite``; the runner and the CLI find it
by name. Suites receive the backend protocol only, never a concrete model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from biasaudit.audit.config import RunConfig
from biasaudit.backend.protocol import Backend
from biasaudit.errors import InvalidRequestError

SuiteFn = Callable[[Backend, RunConfig], dict[str, Any]]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    run: SuiteFn


SUITES: dict[str, Suite] = {}


def register_suite(name: str, description: str) -> Callable[[SuiteFn], SuiteFn]:
    """Decorator: make ``fn(backend, config) -> dict`` available as suite ``name``."""

    def wrap(fn: SuiteFn) -> SuiteFn:
        if name in SUITES:
            raise InvalidRequestError(f"suite {name!r} is registered twice")
        SUITES[name] = Suite(name=name, description=description, run=fn)
        return fn

    return wrap


def resolve_suites(names: list[str]) -> list[Suite]:
    """The suites named (all of them when ``names`` is empty), refusing unknown names."""
    if not names:
        return list(SUITES.values())
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise InvalidRequestError(f"unknown suite(s) {unknown}; available: {sorted(SUITES)}")
    return [SUITES[n] for n in dict.fromkeys(names)]


@register_suite(
    "yesno_prior",
    "P(Yes) on content-free yes/no questions: the model's prior before it reads anything (0.5 = unbiased)",
)
def _yesno_prior(backend: Backend, config: RunConfig) -> dict[str, Any]:
    from biasaudit.negbias.content_free import ContentFreeYesNoPrior, YesNoPromptSet
    from biasaudit.probes import load_probe

    prompt_set = load_probe(YesNoPromptSet, "yesno/content_free")
    estimator = ContentFreeYesNoPrior(
        apply_chat_template=config.apply_chat_template, limit=config.limit, seed=config.seed
    ).fit(backend, prompt_set)
    return {"probe": prompt_set.name, **estimator.to_dict()}


@register_suite(
    "negbias",
    "Negative bias: yes/no answers split by what the model knows (correct / incorrect / insufficient), "
    "under several prompt formats (shipped fact set)",
)
def _negbias(backend: Backend, config: RunConfig) -> dict[str, Any]:
    from biasaudit.negbias.audit import NegBiasAuditConfig, run_negbias
    from biasaudit.negbias.builder import NegBiasSetConfig

    negbias_config = NegBiasAuditConfig(
        limit=config.limit, build=NegBiasSetConfig(seed=config.seed), apply_chat_template=config.apply_chat_template
    )
    return run_negbias(backend, negbias_config)


@register_suite(
    "icl",
    "Few-shot label bias (vanilla, context, domain) and calibration gains (CC, DC, BC) on 5 tasks",
)
def _icl(backend: Backend, config: RunConfig) -> dict[str, Any]:
    from pathlib import Path

    from biasaudit.calibration.evaluate import ICLEvalConfig, evaluate_icl
    from biasaudit.datasets import default_data_dir
    from biasaudit.errors import DatasetNotFoundError

    try:
        data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    except DatasetNotFoundError as exc:
        return {"skipped": str(exc)}
    # The audit runs a short version of the benchmark's protocol: 8-shot, 2 demo seeds.
    eval_config = ICLEvalConfig(shots=[8], seeds=[config.seed, config.seed + 1], n_test=config.limit or 100)
    tasks = evaluate_icl(backend, eval_config, data_dir)
    gains = {
        name: {
            method: row[method]["macro_f1_mean"] - row["none"]["macro_f1_mean"]
            for method in eval_config.methods
            if method != "none"
        }
        for name, result in tasks.items()
        for row in [result["summary"]["8"]]
    }
    return {
        "protocol": eval_config.to_dict(),
        "data_dir": str(data_dir),
        "macro_f1_gain_vs_none": gains,
        "tasks": tasks,
    }


@register_suite(
    "biaslens",
    "BiasLens: test-set-free bias from concept vectors (CAVs), per probe and per bias category",
)
def _biaslens(backend: Backend, config: RunConfig) -> dict[str, Any]:
    from biasaudit.biaslens.audit import BiasLensAudit, BiasLensConfig

    n = min(200, config.limit) if config.limit else 200
    lens_config = BiasLensConfig(n_examples=n, n_generic=n, seed=config.seed, sae=config.sae)
    return BiasLensAudit(lens_config).run(backend).to_dict()


def _metrics_suite(backend: Backend, config: RunConfig, name: str) -> dict[str, Any]:
    from biasaudit.metrics import run_benchmark

    return run_benchmark(
        name,
        backend,
        limit=config.limit,
        seed=config.seed,
        source=config.data_dir,
        apply_chat_template=config.apply_chat_template,
    )


# The traditional benchmarks share one runner (``biasaudit.metrics.run_benchmark``).
_METRIC_SUITES = {
    "crows_pairs": "CrowS-Pairs: % of minimal pairs whose more stereotypical sentence is more likely "
    "(50 = unbiased), per bias type",
    "bbq": "BBQ: QA accuracy in ambiguous and disambiguated contexts, bias scores s_DIS and s_AMB per category",
    "stereoset": "StereoSet intra- and intersentence: LMS, SS (50 = unbiased) and ICAT, per bias type",
    "winobias": "WinoBias: coreference accuracy on pro- vs anti-stereotypical sentences and the gap, types 1 and 2",
}
for _name, _description in _METRIC_SUITES.items():
    register_suite(_name, _description)(functools.partial(_metrics_suite, name=_name))
