"""How much an LVLM's answers follow its language prior, and what each mitigation changes (METHODS.md §5).

``LVLMEvaluator(mitigations=("none", "posthoc", "sampling")).fit(backend, items)`` asks every probe item
(``biasaudit.lvlm.probe``) with its image and with the reference inputs, in one batched backend request per
label set, and scores:

- ``blind``: the answer with no image at all (the ``none`` reference). Its accuracy and answer
  distribution show how much the prior alone decides (Zhang et al. 2024, arXiv 2403.05262, Fig. 1: LLaVA
  answers confidently with no image);
- ``none``: the plain answer, argmax of the label log-probs with the real image;
- ``posthoc``: ``PostHocDebias`` over the same label probabilities (per question, or a dataset prior);
- ``greedy``: plain greedy generation, the peer of the decoding mitigations;
- ``sampling``: greedy generation with ``DebiasSamplingProcessor`` (visual debias decoding, reference
  ``references[0]``); ``vcd``: the same with a diffusion-noised image as reference (Leng et al. 2024).

Each method gets accuracy (95% bootstrap interval), F1 (Yes positive for yes/no; macro over labels for
multiple choice), the yes-ratio, the answer distribution and, for generation, the parse-failure rate, over
all items and per probe split (POPE's random / popular / adversarial).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from biasaudit.backend.protocol import VisionBackend
from biasaudit.errors import InvalidRequestError
from biasaudit.jsonio import dataclass_from_dict
from biasaudit.lvlm.posthoc import MODES, REFERENCES, PostHocDebias, label_distribution
from biasaudit.lvlm.probe import ProbeItem
from biasaudit.lvlm.sampling import DebiasSamplingProcessor
from biasaudit.stats import bootstrap_ci

MITIGATIONS: tuple[str, ...] = ("none", "posthoc", "sampling", "vcd")
# Scored from label log-probs (no generation) vs decoded and parsed.
_SCORED = ("blind", "none", "posthoc")
_DECODED = ("greedy", "sampling", "vcd")
ALL_ITEMS = "all"


@dataclass
class LVLMEvalConfig:
    """Every choice that shapes the numbers; round-trips through JSON (``to_dict``/``from_dict``)."""

    mitigations: list[str] = field(default_factory=lambda: ["none", "posthoc", "sampling"])
    references: list[str] = field(default_factory=lambda: ["none"])
    posthoc_mode: str = "per_question"
    alpha: float = 1.0
    beta: float = 0.1
    max_new_tokens: int = 8
    n_bootstrap: int = 1000
    seed: int = 0

    def validate(self) -> None:
        """Refuse unknown mitigations, references or modes before any model time is spent."""
        bad = [m for m in self.mitigations if m not in MITIGATIONS]
        if bad or not self.mitigations:
            raise InvalidRequestError(f"unknown mitigation(s) {bad}; choose from {', '.join(MITIGATIONS)}")
        bad = [r for r in self.references if r not in REFERENCES]
        if bad or not self.references:
            raise InvalidRequestError(f"unknown reference(s) {bad}; choose from {', '.join(REFERENCES)}")
        if self.posthoc_mode not in MODES:
            raise InvalidRequestError(f"posthoc_mode must be one of {MODES}, not {self.posthoc_mode!r}")
        if self.max_new_tokens < 1 or self.n_bootstrap < 1:
            raise InvalidRequestError("max_new_tokens and n_bootstrap must be positive")
        DebiasSamplingProcessor(self.alpha, self.beta)  # checks alpha and beta

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LVLMEvalConfig:
        return dataclass_from_dict(cls, data, "lvlm config")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def parse_answer(text: str, labels: Sequence[str]) -> int | None:
    """Index of the label a generated reply gives, or None when it gives none (or several).

    First the reply's start, case-insensitive and as a whole word ("Yes.", " yes, there is", "(B)",
    "B. 3"); the longest matching label wins, so "No" is not read from "None". Failing that, a reply that
    names exactly one label of two or more characters as a whole word ("The answer is no.") gives that
    label; one-letter labels are not searched for inside a sentence, where "a" is an article.
    """
    t = text.strip().lstrip("(\"'*[ ").lower()
    for k in sorted(range(len(labels)), key=lambda i: -len(labels[i])):
        label = labels[k].strip().lower()
        if label and t.startswith(label) and (len(t) == len(label) or not t[len(label)].isalnum()):
            return k
    named = [
        k
        for k, label in enumerate(labels)
        if len(label.strip()) > 1 and re.search(rf"(?<![\w]){re.escape(label.strip().lower())}(?![\w])", t)
    ]
    return named[0] if len(named) == 1 else None


def answer_metrics(
    pred: Sequence[int | None], gold: Sequence[int], labels: Sequence[str], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Accuracy (with a bootstrap interval), F1, yes-ratio, answer distribution and parse failures.

    A parse failure (None) counts as wrong. F1: Yes is the positive class when the labels are Yes/No,
    else macro-F1 over the labels.
    """
    n = len(gold)
    correct = np.array([p == g for p, g in zip(pred, gold, strict=True)], dtype=np.float64)
    failed = sum(p is None for p in pred)
    filled = [-1 if p is None else p for p in pred]  # a failure is its own (wrong) class for F1
    lower = [label.strip().lower() for label in labels]
    yes_no = sorted(lower) == ["no", "yes"]
    if yes_no:
        yes = lower.index("yes")
        f1 = f1_score(gold, filled, labels=[yes], average="macro", zero_division=0.0)
    else:
        f1 = f1_score(gold, filled, labels=list(range(len(labels))), average="macro", zero_division=0.0)
    counts = np.bincount([p for p in filled if p >= 0], minlength=len(labels))
    out: dict[str, Any] = {
        "n": n,
        "accuracy": float(correct.mean()) if n else None,
        "accuracy_ci": list(bootstrap_ci(correct, n_resamples=n_bootstrap, seed=seed)) if n >= 2 else None,
        "f1": float(f1),
        "answer_distribution": {label: float(c / n) for label, c in zip(labels, counts, strict=True)},
        "parse_failure_rate": failed / n if n else None,
    }
    if yes_no:
        out["yes_ratio"] = float(counts[lower.index("yes")] / n)
        out["gold_yes_ratio"] = float(np.mean([g == lower.index("yes") for g in gold]))
    return out


class LVLMEvaluator:
    """Language-prior measurements and mitigations on a probe (see the module docstring).

    Hyper-parameters are those of ``LVLMEvalConfig`` (keyword arguments); ``fit(backend, items)`` fills
    ``results_`` ({method: {split: metrics}}), ``predictions_`` (one record per item and method) and
    ``posthoc_`` (the fitted debiaser per label set; a ``dataset`` prior can be saved with ``to_dict``).
    """

    def __init__(self, **params: Any) -> None:
        self.config = LVLMEvalConfig.from_dict(params)
        self.config.validate()

    def _methods(self) -> list[str]:
        mitigations = self.config.mitigations
        methods = ["blind"] + [m for m in ("none", "posthoc") if m in mitigations]
        if any(m in mitigations for m in ("sampling", "vcd")):
            methods += ["greedy"] + [m for m in ("sampling", "vcd") if m in mitigations]
        return methods

    def fit(self, backend: VisionBackend, items: Sequence[ProbeItem]) -> LVLMEvaluator:
        if len(items) == 0:
            raise InvalidRequestError("no probe items to evaluate")
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            raise InvalidRequestError("probe item ids repeat; every item needs its own id")
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            if not item.labels:
                raise InvalidRequestError(f"item {item.id!r} has no answer-label set")
            if item.answer not in item.labels:
                raise InvalidRequestError(f"item {item.id!r}: answer {item.answer!r} is not one of {item.labels}")
            groups[tuple(item.labels)].append(i)
        methods = self._methods()
        preds: dict[str, list[int | None]] = {m: [None] * len(items) for m in methods}
        texts: dict[str, dict[int, str]] = {}
        self.posthoc_: dict[str, PostHocDebias] = {}
        for labels, index in groups.items():
            self._fit_group(backend, [items[i] for i in index], list(labels), index, preds, texts)
        self._score(items, preds, texts)
        return self

    def _fit_group(
        self,
        backend: VisionBackend,
        items: Sequence[ProbeItem],
        labels: list[str],
        index: list[int],
        preds: dict[str, list[int | None]],
        texts_out: dict[str, dict[int, str]],
    ) -> None:
        cfg = self.config
        questions = [item.question for item in items]
        images = [item.image for item in items]
        kinds = ["image", *dict.fromkeys(["none", *cfg.references])]
        log_probs = backend.label_log_probs_by_input(questions, labels, images, kinds)
        probs = {
            kind: label_distribution(lp, log_probs=True, what=f"{kind} label log-probs")
            for kind, lp in log_probs.items()
        }
        chosen = {"blind": probs["none"].argmax(axis=1), "none": probs["image"].argmax(axis=1)}
        if "posthoc" in cfg.mitigations:
            debias = PostHocDebias(references=tuple(cfg.references), mode=cfg.posthoc_mode)  # type: ignore[arg-type]
            debias.fit({r: probs[r] for r in cfg.references})
            chosen["posthoc"] = debias.predict(probs["image"])
            self.posthoc_["/".join(labels)] = debias
        for method, picks in chosen.items():
            if method not in preds:  # "none" is always computed (posthoc reads it) but reported only if asked
                continue
            for i, pick in zip(index, picks, strict=True):
                preds[method][i] = int(pick)
        decoders = {
            "greedy": None,
            "sampling": DebiasSamplingProcessor(cfg.alpha, cfg.beta, reference=cfg.references[0]),
            "vcd": DebiasSamplingProcessor.vcd(cfg.alpha, cfg.beta),
        }
        for method in _DECODED:
            if method not in preds:
                continue
            texts = backend.generate(
                questions, images=images, max_new_tokens=cfg.max_new_tokens, debias=decoders[method]
            )
            for i, text in zip(index, texts, strict=True):
                preds[method][i] = parse_answer(text, labels)
                texts_out.setdefault(method, {})[i] = text

    def _score(
        self, items: Sequence[ProbeItem], preds: dict[str, list[int | None]], texts: dict[str, dict[int, str]]
    ) -> None:
        cfg = self.config
        splits = [ALL_ITEMS, *sorted({item.split for item in items})]
        self.results_: dict[str, dict[str, Any]] = {}
        for method, picks in preds.items():
            self.results_[method] = {}
            for split in splits:
                chosen = [i for i, item in enumerate(items) if split == ALL_ITEMS or item.split == split]
                by_labels: dict[tuple[str, ...], list[int]] = defaultdict(list)
                for i in chosen:
                    by_labels[tuple(items[i].labels)].append(i)
                if len(by_labels) > 1:  # mixed label sets: accuracy only
                    acc = np.array([picks[i] == items[i].labels.index(items[i].answer) for i in chosen], float)
                    self.results_[method][split] = {"n": len(chosen), "accuracy": float(acc.mean())}
                    continue
                ((labels, rows),) = by_labels.items()
                gold = [items[i].labels.index(items[i].answer) for i in rows]
                self.results_[method][split] = answer_metrics(
                    [picks[i] for i in rows], gold, labels, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed
                )
        self.predictions_ = [
            {
                "id": item.id,
                "split": item.split,
                "answer": item.answer,
                **{m: _label_or_none(item.labels, preds[m][i]) for m in preds},
                **{f"{m}_text": texts[m][i] for m in texts},
            }
            for i, item in enumerate(items)
        ]

    def to_dict(self, *, include_predictions: bool = False) -> dict[str, Any]:
        """Config, results and fitted post-hoc debiasers as JSON-ready data."""
        out: dict[str, Any] = {
            "method": "lvlm_prior_debias",
            "config": self.config.to_dict(),
            "results": self.results_,
            "posthoc": {name: d.to_dict() for name, d in self.posthoc_.items()},
        }
        if include_predictions:
            out["predictions"] = self.predictions_
        return out


def _label_or_none(labels: Sequence[str], pick: int | None) -> str | None:
    return None if pick is None else labels[pick]
