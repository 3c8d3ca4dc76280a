"""How much an LVLM's answers follow its language prior, and what each mitigation changes (docs/methods.md §5).

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

Each method gets accuracy and the yes-ratio with 95% score intervals, F1 (Yes positive for yes/no; macro over
labels for multiple choice), the answer distribution and, for generation, the parse-failure rate, over all items
and per probe split (POPE's random / popular / adversarial). Each mitigation also gets its change in accuracy over
its plain peer on the same items (``posthoc`` vs ``none``, ``sampling`` and ``vcd`` vs ``greedy``), with a paired
95% interval.

Probe items are independent (each has its own drawn image), so a share of items is a binomial proportion -- for
yes/no items a weighted sum of two, over the gold-Yes and the gold-No items, whose counts the probe fixes -- and
two methods on the same items give a paired 2x2 table. The intervals are score intervals (``biasaudit.stats``,
``stratified_share_interval``), not a bootstrap: the percentile bootstrap of a share covers far less than 95% at
the per-split sizes of a typical run (66% at 20 items and accuracy 0.95; ``tests/stats/test_lvlm_intervals.py``).
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
from biasaudit.stats import paired_difference_interval, wilson_interval

MITIGATIONS: tuple[str, ...] = ("none", "posthoc", "sampling", "vcd")
# Decoded and parsed (the others are scored from label log-probs).
_DECODED = ("greedy", "sampling", "vcd")
# Each mitigation is compared with the plain method of its kind, on the same items.
PEERS: dict[str, str] = {"posthoc": "none", "sampling": "greedy", "vcd": "greedy"}
ALL_ITEMS = "all"


@dataclass
class LVLMEvalConfig:
    """Every choice that shapes the numbers; round-trips through JSON (``to_dict``/``from_dict``)."""

    mitigations: list[str] = field(default_factory=lambda: ["none", "posthoc", "sampling"])
    references: list[str] = field(default_factory=lambda: ["none"])
    posthoc_mode: str = "per_question"
    # None: the authors' epsilon for the mode (PostHocDebias: 1e-4 per question, 0 for a dataset prior).
    posthoc_epsilon: float | None = None
    alpha: float = 1.0
    beta: float = 0.1
    max_new_tokens: int = 8
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
        if self.max_new_tokens < 1:
            raise InvalidRequestError("max_new_tokens must be positive")
        if self.posthoc_epsilon is not None and not (np.isfinite(self.posthoc_epsilon) and self.posthoc_epsilon >= 0):
            raise InvalidRequestError(f"posthoc_epsilon must be a number >= 0 (or unset), not {self.posthoc_epsilon}")
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


def stratified_share_interval(successes: Sequence[int], sizes: Sequence[int]) -> tuple[float, float]:
    """95% interval of a share sum_g w_g p_g over independent strata of fixed sizes, w_g = n_g / n.

    The Wilson limits (l_g, u_g) of each stratum are combined by MOVER (Zou & Donner 2008, Statistics in
    Medicine 27:1693): est -+ sqrt(sum_g w_g^2 (p_g - l_g)^2) and sqrt(sum_g w_g^2 (u_g - p_g)^2). One stratum
    gives its Wilson interval. For yes/no items the strata are the gold answers, whose counts the probe fixes
    (balanced by construction), so the yes-ratio of a model that answers well is not given the binomial spread
    of a share that could fall anywhere: at 100 items the interval is half as wide, and still covers.
    """
    n = sum(sizes)
    if n < 1 or any(not 0 <= k <= m for k, m in zip(successes, sizes, strict=True)):
        raise InvalidRequestError(f"need 0 <= successes <= size per stratum and items in all, got {successes}, {sizes}")
    estimate, below, above = 0.0, 0.0, 0.0
    for k, m in zip(successes, sizes, strict=True):
        if m == 0:
            continue
        w, share = m / n, k / m
        low, high = wilson_interval(k, m)
        estimate += w * share
        below += (w * (share - low)) ** 2
        above += (w * (high - share)) ** 2
    return max(0.0, estimate - float(np.sqrt(below))), min(1.0, estimate + float(np.sqrt(above)))


def answer_metrics(pred: Sequence[int | None], gold: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy and yes-ratio with 95% intervals, F1, answer distribution and parse failures.

    A parse failure (None) counts as wrong (and as not Yes). F1: Yes is the positive class when the labels are
    Yes/No, else macro-F1 over the labels. Intervals: for Yes/No labels both shares are combined from the
    items with gold Yes and gold No (``stratified_share_interval``); otherwise accuracy gets a Wilson interval.
    """
    n = len(gold)
    correct = np.array([p == g for p, g in zip(pred, gold, strict=True)], dtype=bool)
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
        "accuracy_ci": list(wilson_interval(int(correct.sum()), n)) if n else None,  # yes/no: replaced below
        "f1": float(f1),
        "answer_distribution": {label: float(c / n) for label, c in zip(labels, counts, strict=True)},
        "parse_failure_rate": failed / n if n else None,
    }
    if yes_no:
        gold_yes = np.array(gold) == yes
        says_yes = np.array(filled) == yes
        sizes = [int(gold_yes.sum()), int((~gold_yes).sum())]
        out["accuracy_ci"] = list(
            stratified_share_interval([int(correct[gold_yes].sum()), int(correct[~gold_yes].sum())], sizes)
        )
        out["yes_ratio"] = float(counts[yes] / n)
        out["yes_ratio_ci"] = list(
            stratified_share_interval([int(says_yes[gold_yes].sum()), int(says_yes[~gold_yes].sum())], sizes)
        )
        out["gold_yes_ratio"] = float(gold_yes.mean())
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
            debias = PostHocDebias(
                references=tuple(cfg.references),
                mode=cfg.posthoc_mode,  # type: ignore[arg-type]
                epsilon=cfg.posthoc_epsilon,
            )
            # The backend's log-probs are normalised over the vocabulary: combined references and the dataset
            # prior weigh each reference and question by its label mass, as the authors' code does.
            debias.fit({r: log_probs[r] for r in cfg.references}, log_probs=True)
            chosen["posthoc"] = debias.predict(log_probs["image"], log_probs=True)
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
        splits = [ALL_ITEMS, *sorted({item.split for item in items})]
        gold_all = [item.labels.index(item.answer) for item in items]
        correct = {m: np.array([p == g for p, g in zip(picks, gold_all, strict=True)]) for m, picks in preds.items()}
        self.results_: dict[str, dict[str, Any]] = {}
        for method, picks in preds.items():
            self.results_[method] = {}
            for split in splits:
                chosen = [i for i, item in enumerate(items) if split == ALL_ITEMS or item.split == split]
                by_labels: dict[tuple[str, ...], list[int]] = defaultdict(list)
                for i in chosen:
                    by_labels[tuple(items[i].labels)].append(i)
                if len(by_labels) > 1:  # mixed label sets: accuracy only
                    k = int(correct[method][chosen].sum())
                    metrics = {
                        "n": len(chosen),
                        "accuracy": k / len(chosen),
                        "accuracy_ci": list(wilson_interval(k, len(chosen))),
                    }
                else:
                    ((labels, rows),) = by_labels.items()
                    metrics = answer_metrics([picks[i] for i in rows], [gold_all[i] for i in rows], labels)
                peer = PEERS.get(method)
                if peer in correct:
                    # Paired: both methods answered exactly these items, row for row.
                    metrics["accuracy_change"] = {
                        "vs": peer,
                        **accuracy_change(correct[method][chosen], correct[str(peer)][chosen]),
                    }
                self.results_[method][split] = metrics
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


def accuracy_change(correct: np.ndarray, correct_peer: np.ndarray) -> dict[str, Any]:
    """Accuracy of a method minus its peer's on the same items, (n,) booleans each, row i = item i.

    ``delta`` = (gains - losses) / n, where ``gains`` counts items only the method answers right and ``losses``
    items only the peer does; ``ci`` is Newcombe's paired 95% interval from that 2x2 table
    (``biasaudit.stats.paired_difference_interval``), so the pairing of items is kept.
    """
    ours, peer = np.asarray(correct, dtype=bool), np.asarray(correct_peer, dtype=bool)
    if ours.shape != peer.shape or ours.ndim != 1 or len(ours) == 0:
        raise InvalidRequestError(
            f"need two equally long, non-empty answer records, got shapes {ours.shape}, {peer.shape}"
        )
    both, gains, losses = int(np.sum(ours & peer)), int(np.sum(ours & ~peer)), int(np.sum(~ours & peer))
    neither = len(ours) - both - gains - losses
    return {
        "delta": (gains - losses) / len(ours),
        "ci": list(paired_difference_interval(both, gains, losses, neither)),
        "n": len(ours),
        "gains": gains,
        "losses": losses,
    }


def _label_or_none(labels: Sequence[str], pick: int | None) -> str | None:
    return None if pick is None else labels[pick]
