"""Negative-bias evaluation: every item of a yes/no set, asked under every prompt scenario, scored per subset.

``NegBiasEvaluator(scenarios=...).fit(backend, items)`` asks each applicable item under each scenario
(``probes/negbias/scenarios.yaml``) in one batched backend request per scenario: label log-probs for the
scenarios answered by a label (argmax over the scenario's labels; the probabilities renormalised over
the labels are kept), greedy generation for chain-of-thought (its final answer parsed:
``scenarios.parse_final_answer``). Literal answers are mapped to semantic ones (a negated question flips
them) and scored with ``yesno_metrics`` per knowledge subset (correct / incorrect / insufficient) and
over all items (docs/methods.md §4; Song, Yu, Yoon 2025, arXiv 2511.10881: negative bias is strongest where
the model lacks the knowledge), with intervals that take questions, not items, as independent (a QA
question's Yes and No items are answered alike). The same metrics are reported per *question kind* --
how the question's No candidate was made (a random distractor, the model's own wrong answer, or a native
yes/no question) -- since the subsets mix them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biasaudit.backend.protocol import Backend, LabelMode
from biasaudit.errors import BiasAuditError, InvalidRequestError
from biasaudit.jsonio import dataclass_from_dict
from biasaudit.negbias.items import SUBSETS, Subset, YesNoItem
from biasaudit.negbias.metrics import Answer, yesno_metrics
from biasaudit.negbias.scenarios import DEFAULT_SCENARIO_FILE, Scenario, load_scenarios
from biasaudit.progress import progress_bar

SCENARIOS: tuple[str, ...] = ("plain", "context", "idk", "cot", "negated", "swapped", "true_false")
ALL_ITEMS = "all"
# The kind of a question whose items are all gold candidates (a hand-made set without No items), or
# whose No items were made in more than one way.
GOLD_ONLY, MIXED = "gold_only", "mixed"


def question_ids(items: Sequence[YesNoItem]) -> dict[str, str]:
    """{item id: the id of the question it comes from}: ``source_id``, which a QA question's Yes and No
    items share; two questions of different source rows that reuse an id get their row appended."""
    rows: dict[str, set[str]] = {}
    for item in items:
        rows.setdefault(item.source_id, set()).add(item.source)
    return {
        item.id: item.source_id if len(rows[item.source_id]) == 1 else f"{item.source_id}@{item.source}"
        for item in items
    }


def question_kinds(items: Sequence[YesNoItem]) -> dict[str, str]:
    """{item id: how its question's No candidate was made}: "distractor", "model_wrong" or "native" (else
    ``GOLD_ONLY`` or ``MIXED``). A QA question's Yes item is always the gold answer, so the kind of its
    No item is what tells two questions apart."""
    ids = question_ids(items)
    kinds: dict[str, set[str]] = {}
    for item in items:
        kinds.setdefault(ids[item.id], set())
        if item.kind != "gold":
            kinds[ids[item.id]].add(item.kind)
    by_question = {q: (next(iter(k)) if len(k) == 1 else GOLD_ONLY if not k else MIXED) for q, k in kinds.items()}
    return {item.id: by_question[ids[item.id]] for item in items}


@dataclass
class NegBiasConfig:
    """Every choice that shapes the evaluation's numbers; round-trips through JSON (``to_dict``/``from_dict``).

    ``progress`` is not here: it changes nothing in the results.
    """

    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    scenario_file: str = DEFAULT_SCENARIO_FILE
    seed: int = 0
    cot_max_new_tokens: int = 128
    apply_chat_template: bool = False
    label_mode: LabelMode = "first_token"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NegBiasConfig:
        return dataclass_from_dict(cls, data, "negbias config")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> NegBiasConfig:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class ScenarioPrediction:
    """How the model answered one item under one scenario.

    ``question_id``: the item's source question (``question_ids``: its ``source_id``); ``question_kind``:
    how that question's No candidate was made (``question_kinds``).
    ``literal``: which label the model chose ("yes" = the positive label word, e.g. " Yes" or " True";
    "no" the negative one; "idk"; "fail" = no parseable answer). ``answer``: what that means (a negated
    question flips yes and no). ``label``: the chosen label's text (None on a parse failure).
    ``p_yes``: probability of the semantic Yes, renormalised over the scenario's labels; ``probs``: every
    label's renormalised probability, in label order; ``label_mass``: their summed raw probability
    (how much the model expects one of the labels at all). The three are None for chain-of-thought,
    whose ``generation`` holds the raw reply.
    """

    item_id: str
    question_id: str
    question_kind: str
    scenario: str
    subset: Subset
    gold: bool
    literal: Answer
    answer: Answer
    label: str | None
    p_yes: float | None = None
    probs: list[float] | None = None
    label_mass: float | None = None
    generation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NegBiasEvaluator:
    """Negative bias of a model on a yes/no set, per prompt scenario and knowledge subset.

    Parameters (stored unchanged; checked in ``fit``)
    ----------
    scenarios: names of the scenarios to run, from ``scenario_file``.
    scenario_file: a scenario file name under ``probes/`` or a YAML path.
    seed: the generation seed (chain-of-thought is greedy, so it only matters for sampling backends).
    cot_max_new_tokens: generation budget of chain-of-thought replies.
    apply_chat_template: ask in the model's chat template (``chat_labels`` are scored then).
    label_mode: how labels are scored (``first_token`` or ``full_sequence``; see ``Backend.label_log_probs``).
        With ``first_token`` the "I don't know" label is scored by its first token.
    progress: show a bar over scenarios.

    Attributes after ``fit``
    ------------------------
    predictions_: list of ``ScenarioPrediction``, scenario by scenario, items in input order.
    results_: {scenario: {"correct" | "incorrect" | "insufficient" | "all": ``yesno_metrics`` dict}}.
    results_by_kind_: {scenario: {subset or "all": {question kind: ``yesno_metrics`` dict}}}, kinds
        present only ("distractor", "model_wrong", "native").
    excluded_: {scenario: number of items it could not ask (a context scenario skips items without one)}.
    scenarios_: {scenario: ``Scenario``} definitions used.  n_items_: items given.
    model_, fingerprint_: the backend's name and weights fingerprint (None when it has none).
    """

    def __init__(
        self,
        scenarios: Sequence[str] = SCENARIOS,
        *,
        scenario_file: str | Path = DEFAULT_SCENARIO_FILE,
        seed: int = 0,
        cot_max_new_tokens: int = 128,
        apply_chat_template: bool = False,
        label_mode: LabelMode = "first_token",
        progress: bool = True,
    ) -> None:
        self.scenarios = scenarios
        self.scenario_file = scenario_file
        self.seed = seed
        self.cot_max_new_tokens = cot_max_new_tokens
        self.apply_chat_template = apply_chat_template
        self.label_mode = label_mode
        self.progress = progress

    @property
    def config(self) -> NegBiasConfig:
        """The hyper-parameters as a JSON-ready config."""
        return NegBiasConfig(
            scenarios=self._scenario_names(),
            scenario_file=str(self.scenario_file),
            seed=self.seed,
            cot_max_new_tokens=self.cot_max_new_tokens,
            apply_chat_template=self.apply_chat_template,
            label_mode=self.label_mode,
        )

    @classmethod
    def from_config(cls, config: NegBiasConfig, *, progress: bool = True) -> NegBiasEvaluator:
        return cls(
            config.scenarios,
            scenario_file=config.scenario_file,
            seed=config.seed,
            cot_max_new_tokens=config.cot_max_new_tokens,
            apply_chat_template=config.apply_chat_template,
            label_mode=config.label_mode,
            progress=progress,
        )

    def _scenario_names(self) -> list[str]:
        # A bare string is one scenario, not a sequence of one-letter names; repeats are asked once.
        names = [self.scenarios] if isinstance(self.scenarios, str) else list(self.scenarios)
        return list(dict.fromkeys(names))

    def _check_params(self) -> None:
        if self.label_mode not in ("first_token", "full_sequence"):
            raise InvalidRequestError(f"label_mode must be 'first_token' or 'full_sequence', not {self.label_mode!r}")
        if self.cot_max_new_tokens < 1:
            raise InvalidRequestError(f"cot_max_new_tokens must be at least 1, got {self.cot_max_new_tokens}")

    def fit(self, backend: Backend, items: Iterable[YesNoItem]) -> NegBiasEvaluator:
        """Ask every item under every scenario (one backend request per scenario) and score the answers."""
        self._check_params()
        items = list(items)
        if not items:
            raise InvalidRequestError(
                "NegBiasEvaluator.fit got no items; build a yes/no set first or load one with "
                "biasaudit.negbias.items.load_items(path)"
            )
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise InvalidRequestError(f"item id {item.id!r} appears twice; every item needs its own id")
            seen.add(item.id)
        available = load_scenarios(self.scenario_file)
        names = self._scenario_names()
        unknown = [n for n in names if n not in available]
        if unknown or not names:
            raise InvalidRequestError(
                f"unknown scenario(s) {unknown or '(none given)'}; valid scenarios in {self.scenario_file}: "
                f"{list(available)}"
            )
        self.scenarios_ = {n: available[n] for n in names}
        self.model_ = str(getattr(backend, "name", type(backend).__name__))
        fingerprint = getattr(backend, "fingerprint", None)
        self.fingerprint_ = str(fingerprint) if fingerprint is not None else None
        self.n_items_ = len(items)
        self._question_ids = question_ids(items)
        self._question_kinds = question_kinds(items)
        self.predictions_: list[ScenarioPrediction] = []
        self.results_: dict[str, dict[str, dict[str, Any]]] = {}
        self.results_by_kind_: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.excluded_: dict[str, int] = {}
        with progress_bar("negative bias: scenarios", len(names), enabled=self.progress) as advance:
            for name, scenario in self.scenarios_.items():
                asked = [it for it in items if scenario.applies_to(it)]
                self.excluded_[name] = len(items) - len(asked)
                predictions = self._ask(backend, scenario, asked) if asked else []
                self.predictions_.extend(predictions)
                self.results_[name], self.results_by_kind_[name] = score_predictions(predictions)
                advance()
        return self

    def _ask(self, backend: Backend, scenario: Scenario, items: Sequence[YesNoItem]) -> list[ScenarioPrediction]:
        """One batched backend request for all ``items`` under ``scenario``."""
        prompts = [scenario.render(it) for it in items]
        labels = scenario.labels_for(self.apply_chat_template)
        if scenario.chain_of_thought:
            texts = backend.generate(
                prompts,
                max_new_tokens=self.cot_max_new_tokens,
                do_sample=False,
                seed=self.seed,
                apply_chat_template=self.apply_chat_template,
                stop=list(scenario.until) or None,  # the model has started inventing a next item
            )
            if len(texts) != len(prompts):
                raise BiasAuditError(f"the backend returned {len(texts)} generations for {len(prompts)} prompts")
            out = []
            for it, text in zip(items, texts, strict=True):
                literal = scenario.parse(text)
                label = None if literal == "fail" else labels[("yes", "no", "idk").index(literal)].strip()
                out.append(self._prediction(it, scenario, literal, label, generation=text))
            return out
        log_probs = np.asarray(
            backend.label_log_probs(
                prompts, labels, mode=self.label_mode, apply_chat_template=self.apply_chat_template
            ),
            dtype=np.float64,
        )
        if log_probs.shape != (len(prompts), len(labels)):
            raise BiasAuditError(
                f"the backend returned label log-probs of shape {log_probs.shape}, "
                f"expected {(len(prompts), len(labels))}"
            )
        # The positive label carries the semantic Yes, unless the question is negated.
        yes_index = 1 if scenario.negated else 0
        out = []
        for it, row in zip(items, log_probs, strict=True):
            top = float(np.max(row))
            if not np.isfinite(top):  # NaN, or every label impossible: no answer to read
                out.append(self._prediction(it, scenario, "fail", None))
                continue
            # Softmax over the labels, shifted by the max so tiny log-probs do not underflow to 0/0.
            probs = np.exp(row - top)
            probs /= probs.sum()
            index = int(np.argmax(row))
            out.append(
                self._prediction(
                    it,
                    scenario,
                    scenario.literal_answer(index),
                    labels[index].strip(),
                    p_yes=float(probs[yes_index]),
                    probs=[float(p) for p in probs],
                    label_mass=float(np.exp(row).sum()),
                )
            )
        return out

    def _prediction(
        self, item: YesNoItem, scenario: Scenario, literal: Answer, label: str | None, **extra: Any
    ) -> ScenarioPrediction:
        return ScenarioPrediction(
            item_id=item.id,
            question_id=self._question_ids[item.id],
            question_kind=self._question_kinds[item.id],
            scenario=scenario.name,
            subset=item.subset,
            gold=item.label,
            literal=literal,
            answer=scenario.semantic(literal),
            label=label,
            **extra,
        )

    def to_dict(self, include_predictions: bool = False) -> dict[str, Any]:
        """JSON-ready results: config, model, per scenario its definition and coverage, and ``results_``.

        ``include_predictions`` adds every ``ScenarioPrediction`` (chain-of-thought replies included).
        """
        if not hasattr(self, "results_"):
            raise InvalidRequestError("this NegBiasEvaluator is not fitted yet; call fit(backend, items) first")
        scenarios: dict[str, Any] = {}
        for name, scenario in self.scenarios_.items():
            masses = [p.label_mass for p in self.predictions_ if p.scenario == name and p.label_mass is not None]
            excluded = self.excluded_[name]
            scenarios[name] = {
                "definition": scenario.to_dict(),
                "n_asked": self.n_items_ - excluded,
                "n_excluded": excluded,
                "excluded_reason": "item has no context" if excluded else None,
                "mean_label_mass": float(np.mean(masses)) if masses else None,
            }
        out: dict[str, Any] = {
            "method": "negbias",
            "config": self.config.to_dict(),
            "model": self.model_,
            "fingerprint": self.fingerprint_,
            "n_items": self.n_items_,
            "scenarios": scenarios,
            "results": self.results_,
            "results_by_kind": self.results_by_kind_,
        }
        if include_predictions:
            out["predictions"] = [p.to_dict() for p in self.predictions_]
        return out


def score_predictions(
    predictions: Sequence[ScenarioPrediction],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """Metrics of one scenario's predictions: ``yesno_metrics`` per subset (every subset listed, even when
    empty) and over all items; and the same per question kind within each (kinds present only).

    Intervals count questions (``question_id``), not items, as independent. Also re-scores saved predictions
    (``ScenarioPrediction(**row)``) without the model.
    """
    groups: dict[str, list[ScenarioPrediction]] = {s: [p for p in predictions if p.subset == s] for s in SUBSETS}
    groups[ALL_ITEMS] = list(predictions)

    def metrics(group: Sequence[ScenarioPrediction]) -> dict[str, Any]:
        return yesno_metrics(
            np.array([p.gold for p in group], dtype=bool),
            [p.answer for p in group],
            literal=[p.literal for p in group],
            clusters=[p.question_id for p in group],
        )

    by_subset = {key: metrics(group) for key, group in groups.items()}
    by_kind = {
        key: {
            kind: metrics([p for p in group if p.question_kind == kind])
            for kind in sorted({p.question_kind for p in group})
        }
        for key, group in groups.items()
    }
    return by_subset, by_kind
