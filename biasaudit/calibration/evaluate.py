"""The ICL calibration protocol of Fei et al. (ACL 2023): tasks x shots x demo seeds x calibrators.

For each (task, k, seed): draw k demonstrations from the train pool with ``seed``, score the frozen
test subset once (the label log-probs are shared by every calibrator: no calibrator re-runs the model
on test inputs), fit each calibrator, and report accuracy and Macro-F1. CC scores 3 content-free
inputs and DC 20 random in-domain strings (sampled from the *unlabeled* test inputs, as in the
paper); BC uses the test log-probs themselves. With k = 0 every seed gives the same prompt, so one
seed is run. Label-bias measurements (vanilla, context, domain, predicted-label skew) come per task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from biasaudit.backend.protocol import Backend, LabelMode
from biasaudit.calibration.base import PriorCalibrator
from biasaudit.calibration.batch import BatchCalibrator
from biasaudit.calibration.label_bias import (
    context_label_bias,
    domain_label_bias,
    predicted_label_skew,
    recall_spread,
    vanilla_label_bias,
)
from biasaudit.calibration.prompt import ICLPrompt
from biasaudit.calibration.tasks import ICLTask, load_split, load_task, sample_demonstrations, sample_test
from biasaudit.progress import progress_bar

TASKS = ("sst2", "agnews", "trec", "cb", "rte")
METHODS = ("none", "cc", "dc", "bc")


@dataclass
class ICLEvalConfig:
    """The protocol's knobs; defaults are the paper's (8-shot headline, 5 seeds, <= 500 test items)."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    shots: list[int] = field(default_factory=lambda: [0, 1, 4, 8])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    n_test: int = 500
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    mode: LabelMode = "first_token"
    measure_bias: bool = True
    bias_shots: int = 8

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ICLEvalConfig:
        return cls(**data)


def make_calibrator(method: str) -> PriorCalibrator:
    """A fresh calibrator for ``method`` (none, cc, dc, bc) with the paper's defaults."""
    try:
        return PriorCalibrator.registry[method]()
    except KeyError:
        raise ValueError(
            f"unknown calibration method {method!r}; choose from {sorted(PriorCalibrator.registry)}"
        ) from None


def _scores(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> dict[str, float]:
    labels = list(range(n_labels))
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
    }


def run_condition(
    backend: Backend,
    prompt: ICLPrompt,
    test_queries: Sequence[dict[str, str]],
    gold: np.ndarray,
    methods: Sequence[str],
) -> tuple[dict[str, Any], np.ndarray]:
    """Score the test set once, then every calibrator.

    Returns ({method: {accuracy, macro_f1, prior, predicted_label_skew}}, test label log-probs (n, K)).
    """
    log_probs = prompt.label_log_probs(backend, test_queries)
    n_labels = len(prompt.labels)
    out: dict[str, Any] = {}
    for method in methods:
        calibrator = make_calibrator(method)
        if isinstance(calibrator, BatchCalibrator):
            calibrator.fit_log_probs(log_probs, prompt, backend)
        else:
            calibrator.fit(backend, prompt, test_queries)
        pred = calibrator.transform_log_probs(log_probs).argmax(axis=1)
        out[method] = {
            **_scores(pred, gold, n_labels),
            "prior": calibrator.prior_.tolist(),
            "predicted_label_skew": predicted_label_skew(pred.tolist(), gold.tolist(), n_labels).value,
        }
    return out, log_probs


def measure_task_bias(
    backend: Backend,
    task: ICLTask,
    train: Sequence[Any],
    test: Sequence[Any],
    config: ICLEvalConfig,
    test_log_probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Vanilla, context and domain label bias, and the uncalibrated skews, for one task.

    ``test_log_probs``: the test set's label log-probs under the first seed's ``bias_shots`` prompt,
    when the protocol already computed them.
    """
    k = min(config.bias_shots, len(train))
    zero_shot = task.icl_prompt([], mode=config.mode)
    demo_sets = [sample_demonstrations(train, k, seed) for seed in config.seeds]
    prompts = [task.icl_prompt(d, mode=config.mode) for d in demo_sets]
    prompts.append(task.icl_prompt(list(reversed(demo_sets[0])), mode=config.mode))  # same demos, other order
    queries = [ex.fields for ex in test]
    gold = [ex.label for ex in test]
    if test_log_probs is None:
        test_log_probs = prompts[0].label_log_probs(backend, queries)
    pred = test_log_probs.argmax(axis=1).tolist()
    n_labels = len(task.labels)
    return {
        "vanilla": vanilla_label_bias(backend, zero_shot).to_dict(),
        "context": context_label_bias(backend, prompts).to_dict(),
        "domain": domain_label_bias(backend, prompts[0], queries).to_dict(),
        "predicted_label_skew": predicted_label_skew(pred, gold, n_labels).to_dict(),
        "recall_spread": recall_spread(pred, gold, n_labels).to_dict(),
        "shots": k,
    }


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
    backend: Backend, config: ICLEvalConfig, data_dir: Path | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Run the protocol; returns {task: {conditions, summary, bias, n_test}} (JSON-ready)."""
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
            conditions = []
            bias_log_probs = None
            for _, shots, seed in [p for p in plan if p[0] == name]:
                prompt = task.icl_prompt(sample_demonstrations(train, shots, seed), mode=config.mode)
                methods, log_probs = run_condition(backend, prompt, queries, gold, config.methods)
                conditions.append({"shots": shots, "seed": seed, "methods": methods})
                if shots == min(config.bias_shots, len(train)) and seed == config.seeds[0]:
                    bias_log_probs = log_probs
                advance(1)
            results[name] = {
                "n_test": len(test),
                "labels": task.label_words,
                "conditions": conditions,
                "summary": summarise(conditions, config.methods),
            }
            if config.measure_bias:
                results[name]["bias"] = measure_task_bias(backend, task, train, test, config, bias_log_probs)
    return results
