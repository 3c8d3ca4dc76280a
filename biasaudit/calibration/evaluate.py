"""The ICL calibration protocol of Fei et al. (ACL 2023): tasks x shots x demo seeds x calibrators.

For each (task, k, seed): draw k demonstrations from the train pool with ``seed``, score the frozen
test subset once (the label log-probs are shared by every calibrator: no calibrator re-runs the model
on test inputs), fit each calibrator, and report accuracy and Macro-F1. CC scores 3 content-free
inputs and DC 20 random in-domain strings (sampled from the *unlabeled* test inputs with the
demonstration seed, as in the paper's code); BC uses the test log-probs themselves. With k = 0 every
seed gives the same prompt, so one seed is run. Label-bias measurements (vanilla, context, domain,
predicted-label skew, recall spread) come per task.

Scoring and fitting are apart: ``condition_log_probs`` asks the model, ``score_condition`` and
``bias_from_log_probs`` only compute, so a run that kept the label log-probs (``raw=`` of
``evaluate_icl``) can be rescored without the model when a method changes.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from biasaudit.backend.protocol import Backend, LabelMode
from biasaudit.calibration.base import PriorCalibrator
from biasaudit.calibration.examples import load_split, sample_demonstrations, sample_test
from biasaudit.calibration.label_bias import (
    CONTEXT_PROMPTS,
    DOMAIN_SAMPLES,
    content_free_log_probs,
    context_label_bias_from_log_probs,
    domain_label_bias_from_log_probs,
    domain_queries,
    predicted_label_skew,
    recall_spread,
    vanilla_label_bias_from_log_probs,
    vanilla_log_probs,
)
from biasaudit.calibration.prompt import ICLPrompt
from biasaudit.calibration.tasks import ICLTask, load_task
from biasaudit.errors import InvalidRequestError
from biasaudit.jsonio import dataclass_from_dict
from biasaudit.progress import progress_bar

TASKS = ("sst2", "agnews", "trec", "cb", "rte")
METHODS = ("none", "cc", "dc", "bc")


@dataclass
class ICLEvalConfig:
    """The protocol's knobs; defaults are the paper's (8-shot headline, 5 seeds, <= 500 test items).

    ``context_prompts``: demonstration sets (seeds ``seeds[0]``, ``seeds[0] + 1``, ...) behind the
    context-label bias; ``domain_samples``: random strings per arm of the domain-label bias.
    """

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    shots: list[int] = field(default_factory=lambda: [0, 1, 4, 8])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    n_test: int = 500
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    mode: LabelMode = "first_token"
    measure_bias: bool = True
    bias_shots: int = 8
    context_prompts: int = CONTEXT_PROMPTS
    domain_samples: int = DOMAIN_SAMPLES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ICLEvalConfig:
        return dataclass_from_dict(cls, data, "ICL evaluation config")


def make_calibrator(method: str, seed: int = 0) -> PriorCalibrator:
    """A fresh calibrator for ``method`` (none, cc, dc, bc) with the paper's defaults.

    ``seed``: the demonstration seed; calibrators that sample (DC's random words) use it, as the
    reference code does.
    """
    try:
        klass = PriorCalibrator.registry[method]
    except KeyError:
        raise InvalidRequestError(
            f"unknown calibration method {method!r}; choose from {sorted(PriorCalibrator.registry)}"
        ) from None
    if "seed" in inspect.signature(klass.__init__).parameters:
        return klass(seed=seed)  # type: ignore[call-arg]
    return klass()


def _scores(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> dict[str, float]:
    labels = list(range(n_labels))
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
    }


def condition_log_probs(
    backend: Backend,
    prompt: ICLPrompt,
    test_queries: Sequence[dict[str, str]],
    methods: Sequence[str],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Every label log-prob one condition needs: {"test": (n, K)} and, per calibrator with inputs of its
    own, {method: (m, K)} (CC's content-free inputs, DC's random strings; BC reads "test")."""
    raw = {"test": prompt.label_log_probs(backend, test_queries)}
    for method in methods:
        calibrator = make_calibrator(method, seed)
        if calibrator.fits_on_batch:
            continue
        queries = calibrator.calibration_queries(prompt, test_queries)
        if queries:
            raw[method] = prompt.label_log_probs(backend, queries)
    return raw


def score_condition(
    raw: dict[str, np.ndarray],
    prompt: ICLPrompt,
    gold: np.ndarray,
    methods: Sequence[str],
    seed: int = 0,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """{method: {accuracy, macro_f1, prior, predicted_label_skew}} from a condition's label log-probs."""
    n_labels = len(prompt.labels)
    out: dict[str, Any] = {}
    for method in methods:
        calibrator = make_calibrator(method, seed)
        own = raw["test"] if calibrator.fits_on_batch else raw.get(method, np.zeros((0, n_labels)))
        calibrator.fit_log_probs(own, prompt, backend)
        pred = calibrator.transform_log_probs(raw["test"]).argmax(axis=1)
        out[method] = {
            **_scores(pred, gold, n_labels),
            "prior": calibrator.prior_.tolist(),
            "predicted_label_skew": predicted_label_skew(pred.tolist(), gold.tolist(), n_labels).value,
        }
    return out


def run_condition(
    backend: Backend,
    prompt: ICLPrompt,
    test_queries: Sequence[dict[str, str]],
    gold: np.ndarray,
    methods: Sequence[str],
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score the test set once, then every calibrator: (scores per method, the label log-probs used)."""
    raw = condition_log_probs(backend, prompt, test_queries, methods, seed)
    return score_condition(raw, prompt, gold, methods, seed, backend), raw


def _bias_prompts(
    task: ICLTask, train: Sequence[Any], config: ICLEvalConfig
) -> tuple[list[ICLPrompt], list[ICLPrompt]]:
    """(one prompt per demonstration set for context-label bias, the first set in its two orders)."""
    k = min(config.bias_shots, len(train))
    first = config.seeds[0]
    demo_sets = [sample_demonstrations(train, k, first + i) for i in range(max(2, config.context_prompts))]
    prompts = [task.icl_prompt(d, mode=config.mode) for d in demo_sets]
    order = [prompts[0], task.icl_prompt(list(reversed(demo_sets[0])), mode=config.mode)]
    return prompts, order


def bias_log_probs(
    backend: Backend,
    task: ICLTask,
    train: Sequence[Any],
    test: Sequence[Any],
    config: ICLEvalConfig,
    test_log_probs: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every label log-prob the label-bias measurements of one task need (see ``bias_from_log_probs``)."""
    prompts, order = _bias_prompts(task, train, config)
    zero_shot = task.icl_prompt([], mode=config.mode)
    queries = [ex.fields for ex in test]
    in_domain, english = domain_queries(prompts[0], queries, config.domain_samples, seed=config.seeds[0])
    if test_log_probs is None:
        test_log_probs = prompts[0].label_log_probs(backend, queries)
    return {
        "vanilla": vanilla_log_probs(backend, zero_shot),
        "context": content_free_log_probs(backend, prompts),
        "order": content_free_log_probs(backend, order),
        "domain_in_domain": prompts[0].label_log_probs(backend, in_domain),
        "domain_english": prompts[0].label_log_probs(backend, english),
        "test": test_log_probs,
    }


def bias_from_log_probs(raw: dict[str, np.ndarray], gold: np.ndarray, shots: int) -> dict[str, Any]:
    """Vanilla, context and domain label bias, and the uncalibrated skews, from ``bias_log_probs``."""
    pred = np.asarray(raw["test"]).argmax(axis=1)
    n_labels = np.asarray(raw["test"]).shape[1]
    return {
        "vanilla": vanilla_label_bias_from_log_probs(raw["vanilla"]).to_dict(),
        "context": context_label_bias_from_log_probs(raw["context"], raw.get("order")).to_dict(),
        "domain": domain_label_bias_from_log_probs(raw["domain_in_domain"], raw["domain_english"]).to_dict(),
        "predicted_label_skew": predicted_label_skew(pred.tolist(), gold.tolist(), n_labels).to_dict(),
        "recall_spread": recall_spread(pred.tolist(), gold.tolist(), n_labels).to_dict(),
        "shots": shots,
    }


def measure_task_bias(
    backend: Backend,
    task: ICLTask,
    train: Sequence[Any],
    test: Sequence[Any],
    config: ICLEvalConfig,
    test_log_probs: np.ndarray | None = None,
    raw: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Vanilla, context and domain label bias, and the uncalibrated skews, for one task.

    ``test_log_probs``: the test set's label log-probs under the first seed's ``bias_shots`` prompt,
    when the protocol already computed them. ``raw``: filled with the label log-probs measured.
    """
    measured = bias_log_probs(backend, task, train, test, config, test_log_probs)
    if raw is not None:
        raw.update(measured)
    gold = np.array([ex.label for ex in test])
    return bias_from_log_probs(measured, gold, min(config.bias_shots, len(train)))


def summarise(conditions: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Mean and std over seeds of accuracy and Macro-F1, per shots and method."""
    summary: dict[str, Any] = {}
    for shots in sorted({c["shots"] for c in conditions}):
        rows = [c for c in conditions if c["shots"] == shots]
        summary[str(shots)] = {
            m: {
                f"{metric}_{stat}": float(fn([r["methods"][m][metric] for r in rows]))
                for metric in ("macro_f1", "accuracy")
                for stat, fn in (("mean", np.mean), ("std", np.std))
            }
            | {"n_seeds": len(rows)}
            for m in methods
        }
    return summary


def evaluate_icl(
    backend: Backend,
    config: ICLEvalConfig,
    data_dir: Path | None = None,
    *,
    progress: bool = True,
    raw: dict[str, dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Run the protocol; returns {task: {conditions, summary, bias, n_test, truncated_labels}} (JSON-ready).

    ``raw``: filled per task with every label log-prob the numbers come from (keys "gold",
    "cond/<shots>/<seed>/<test|cc|dc>", "bias/<name>"), for ``rescore_icl``.
    """
    for method in config.methods:
        make_calibrator(method)  # refuse a typo before any model time is spent
    results: dict[str, Any] = {}
    plan = [(name, shots, seed) for name in config.tasks for shots in config.shots for seed in config.seeds]
    plan = [(n, k, s) for n, k, s in plan if k > 0 or s == config.seeds[0]]
    with progress_bar("ICL protocol", len(plan), enabled=progress) as advance:
        for name in config.tasks:
            task = load_task(name)
            train = load_split(task, "train", data_dir)
            test = sample_test(load_split(task, "test", data_dir), config.n_test, seed=0)
            queries = [ex.fields for ex in test]
            gold = np.array([ex.label for ex in test])
            task_raw: dict[str, np.ndarray] = {"gold": gold}
            conditions: list[dict[str, Any]] = []
            bias_log_probs_ = None
            truncated: list[str] | None = []
            for _, shots, seed in [p for p in plan if p[0] == name]:
                prompt = task.icl_prompt(sample_demonstrations(train, shots, seed), mode=config.mode)
                if not conditions:
                    truncated = prompt.truncated_labels(backend)
                methods, cond_raw = run_condition(backend, prompt, queries, gold, config.methods, seed)
                conditions.append({"shots": shots, "seed": seed, "methods": methods})
                task_raw.update({f"cond/{shots}/{seed}/{role}": lp for role, lp in cond_raw.items()})
                if shots == min(config.bias_shots, len(train)) and seed == config.seeds[0]:
                    bias_log_probs_ = cond_raw["test"]
                advance(1)
            results[name] = {
                "n_test": len(test),
                "labels": task.label_words,
                "truncated_labels": truncated,
                "conditions": conditions,
                "summary": summarise(conditions, config.methods),
            }
            if config.measure_bias:
                bias_raw: dict[str, np.ndarray] = {}
                results[name]["bias"] = measure_task_bias(
                    backend, task, train, test, config, bias_log_probs_, raw=bias_raw
                )
                task_raw.update({f"bias/{key}": value for key, value in bias_raw.items()})
            if raw is not None:
                raw[name] = task_raw
    return results


def rescore_icl(
    raw: dict[str, dict[str, np.ndarray]], config: ICLEvalConfig, data_dir: Path | None = None
) -> dict[str, Any]:
    """``evaluate_icl``'s results recomputed from its saved label log-probs: no model call.

    The prompts are rebuilt from the task and the demonstration seeds (for their labels and fingerprints);
    the calibrators and measurements are the current code's.
    """
    results: dict[str, Any] = {}
    for name in config.tasks:
        task_raw = raw[name]
        task = load_task(name)
        train = load_split(task, "train", data_dir)
        gold = np.asarray(task_raw["gold"])
        conditions: list[dict[str, Any]] = []
        for shots in config.shots:
            for seed in config.seeds if shots > 0 else config.seeds[:1]:
                prefix = f"cond/{shots}/{seed}/"
                cond_raw = {key[len(prefix) :]: value for key, value in task_raw.items() if key.startswith(prefix)}
                prompt = task.icl_prompt(sample_demonstrations(train, shots, seed), mode=config.mode)
                methods = score_condition(cond_raw, prompt, gold, config.methods, seed)
                conditions.append({"shots": shots, "seed": seed, "methods": methods})
        results[name] = {
            "n_test": len(gold),
            "labels": task.label_words,
            "conditions": conditions,
            "summary": summarise(conditions, config.methods),
        }
        bias_raw = {key[len("bias/") :]: value for key, value in task_raw.items() if key.startswith("bias/")}
        if config.measure_bias and bias_raw:
            results[name]["bias"] = bias_from_log_probs(bias_raw, gold, min(config.bias_shots, len(train)))
    return results
