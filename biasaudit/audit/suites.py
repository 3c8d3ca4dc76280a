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
HeadlineFn = Callable[[dict[str, Any]], str]


def _generic_headline(result: dict[str, Any]) -> str:
    """The overall estimates of a result with an ``overall`` block, else its top-level numbers."""
    overall = result.get("overall")
    if isinstance(overall, dict):
        parts = []
        for key, value in overall.items():
            if isinstance(value, dict) and isinstance(value.get("value"), int | float):
                parts.append(f"{key}={value['value']:.2f}")
        return ", ".join(parts)[:120]
    return ", ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, int | float))[:120]


@dataclass(frozen=True)
class Suite:
    """A registered measurement: ``run(backend, config) -> dict`` and the one-line ``headline`` of a result."""

    name: str
    description: str
    run: SuiteFn
    headline: HeadlineFn = _generic_headline


SUITES: dict[str, Suite] = {}


def register_suite(
    name: str, description: str, headline: HeadlineFn = _generic_headline
) -> Callable[[SuiteFn], SuiteFn]:
    """Decorator: make ``fn(backend, config) -> dict`` available as suite ``name``.

    ``headline(result)`` is the one line the CLI prints for a result (default: its overall numbers).
    """

    def wrap(fn: SuiteFn) -> SuiteFn:
        if name in SUITES:
            raise InvalidRequestError(f"suite {name!r} is registered twice")
        SUITES[name] = Suite(name=name, description=description, run=fn, headline=headline)
        return fn

    return wrap


def headline(name: str, result: dict[str, Any]) -> str:
    """The headline of suite ``name``'s ``result`` (a skipped suite says why)."""
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    suite = SUITES.get(name)
    return suite.headline(result) if suite is not None else _generic_headline(result)


def resolve_suites(names: list[str]) -> list[Suite]:
    """The suites named (all of them when ``names`` is empty), refusing unknown names."""
    if not names:
        return list(SUITES.values())
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise InvalidRequestError(f"unknown suite(s) {unknown}; available: {sorted(SUITES)}")
    return [SUITES[n] for n in dict.fromkeys(names)]


def _yesno_prior_headline(result: dict[str, Any]) -> str:
    low, high = result["ci95"]
    return (
        f"P(Yes | content-free) = {result['mean_p_yes']:.3f} [{low:.3f}, {high:.3f}] "
        f"(0.5 = no prior); No preferred on {result['no_rate']:.0%} of {result['n_prompts']} prompts"
    )


@register_suite(
    "yesno_prior",
    "P(Yes) on content-free yes/no questions: the model's prior before it reads anything (0.5 = unbiased)",
    _yesno_prior_headline,
)
def _yesno_prior(backend: Backend, config: RunConfig) -> dict[str, Any]:
    from biasaudit.negbias.content_free import ContentFreeYesNoPrior, YesNoPromptSet
    from biasaudit.probes import load_probe

    prompt_set = load_probe(YesNoPromptSet, "yesno/content_free")
    estimator = ContentFreeYesNoPrior(
        apply_chat_template=config.apply_chat_template, limit=config.limit, seed=config.seed
    ).fit(backend, prompt_set)
    return {"probe": prompt_set.name, **estimator.to_dict()}


def _negbias_headline(result: dict[str, Any]) -> str:
    """Plain prompt: No-rate and P−R gap per knowledge subset (gold No-rate is 0.5 by construction)."""
    plain = result["results"].get("plain", {})
    parts = []
    for subset in ("correct", "incorrect", "insufficient"):
        metrics = plain.get(subset) or {}
        no_rate, gap = (metrics.get(k) or {} for k in ("no_rate", "pr_gap"))
        if no_rate.get("value") is not None:
            text = f"{subset}: No {no_rate['value']:.0%}"
            if gap.get("value") is not None:
                text += f", P−R {gap['value']:+.2f}"
            parts.append(text)
    return "; ".join(parts) or "no subset had answered items"


@register_suite(
    "negbias",
    "Negative bias: yes/no answers split by what the model knows (correct / incorrect / insufficient), "
    "under several prompt formats (shipped fact set)",
    _negbias_headline,
)
def _negbias(backend: Backend, config: RunConfig) -> dict[str, Any]:
    from biasaudit.negbias.audit import NegBiasAuditConfig, run_negbias
    from biasaudit.negbias.builder import NegBiasSetConfig

    negbias_config = NegBiasAuditConfig(
        limit=config.limit, build=NegBiasSetConfig(seed=config.seed), apply_chat_template=config.apply_chat_template
    )
    return run_negbias(backend, negbias_config)


def _icl_headline(result: dict[str, Any]) -> str:
    parts = []
    for task, gains in result["macro_f1_gain_vs_none"].items():
        base = result["tasks"][task]["summary"]["8"]["none"]["macro_f1_mean"]
        best = max(gains, key=gains.get)
        # The calibrated F1 itself, then the gain: "+0.86" alone read as a gain larger than 1 - base.
        parts.append(f"{task} F1 {base:.2f} -> {base + gains[best]:.2f} ({best.upper()} {gains[best]:+.2f})")
    return "; ".join(parts)


@register_suite(
    "icl",
    "Few-shot label bias (vanilla, context, domain) and calibration gains (CC, DC, BC) on 5 tasks",
    _icl_headline,
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


def _biaslens_headline(result: dict[str, Any]) -> str:
    scored = [c for c in result["categories"] if c["score"] is not None]
    parts = [f"{c['category']} {c['score']:+.3f}" for c in scored]
    unscored = len(result["categories"]) - len(scored)
    return "; ".join(parts) + (f" ({unscored} categories not readable)" if unscored else "")


@register_suite(
    "biaslens",
    "BiasLens: test-set-free bias from concept vectors (CAVs), per probe and per bias category",
    _biaslens_headline,
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
