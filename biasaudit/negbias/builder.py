"""Build a knowledge-stratified yes/no set for one model (docs/methods.md §4).

From short-answer questions: each question is probed (``knowledge.KnowledgeProber``) and becomes two
items of its subset, so every subset is balanced Yes/No by construction:

* **Yes** -- the gold answer as the proposed candidate (``kind="gold"``);
* **No** -- the model's own wrong greedy answer where it has one (``kind="model_wrong"``; the sharpest
  test: will it reject what it itself said?), else a distractor: the gold answer of another question
  of the same answer type that shares no content word with this question's aliases
  (``kind="distractor"``). "Wrong" is ``matching.match_verdict``'s "mismatch": an answer that only
  partly matches gold ("Obama" for "Barack Obama") might be right, so it is never proposed as a No.
  ``negatives="distractor"`` always uses distractors.

From native yes/no questions (BoolQ, StrategyQA): each is probed by asking it directly and keeps its
own gold label; with ``balance`` the majority label of each subset is subsampled (seeded) to the
minority count, and the number dropped is reported.

Every item keeps its provenance: source row, source id, subset, the probe's answers, and the seed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.errors import InvalidRequestError
from biasaudit.jsonio import dataclass_from_dict
from biasaudit.negbias.items import SUBSETS, KnowledgeProbe, QAItem, YesNoItem, YesNoQuestion
from biasaudit.negbias.knowledge import KnowledgeProber
from biasaudit.negbias.matching import match_verdict
from biasaudit.negbias.sources import answer_type


@dataclass
class NegBiasSetConfig:
    """Settings of a set build (JSON round-trip); defaults from docs/methods.md §4."""

    k: int = 5
    temperature: float = 0.7
    min_agree: int = 4
    max_new_tokens: int = 24
    negatives: str = "model_wrong_first"  # or "distractor"
    balance: bool = True
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NegBiasSetConfig:
        return dataclass_from_dict(cls, data, "set-config")

    def validate(self) -> None:
        if self.negatives not in ("model_wrong_first", "distractor"):
            raise InvalidRequestError(f"negatives must be 'model_wrong_first' or 'distractor', not {self.negatives!r}")


class NegBiasSetBuilder:
    """``NegBiasSetBuilder(config).fit(backend, qa=..., yesno=...)`` -> ``items_``, ``probes_``, ``summary_``."""

    def __init__(self, config: NegBiasSetConfig | None = None, *, progress: bool = True) -> None:
        self.config = config or NegBiasSetConfig()
        self.progress = progress

    def fit(
        self, backend: Backend, qa: Sequence[QAItem] = (), yesno: Sequence[YesNoQuestion] = ()
    ) -> NegBiasSetBuilder:
        cfg = self.config
        cfg.validate()
        if not qa and not yesno:
            raise InvalidRequestError("no questions: pass short-answer questions (qa) and/or yes/no questions")
        prober = KnowledgeProber(
            k=cfg.k, temperature=cfg.temperature, min_agree=cfg.min_agree, max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed, progress=self.progress,
        )  # fmt: skip
        self.probes_: dict[str, KnowledgeProbe] = {}
        self.items_: list[YesNoItem] = []
        self.dropped_: dict[str, int] = {}
        if qa:
            probes = prober.probe_qa(backend, qa)
            self.probes_.update({item.id: probe for item, probe in zip(qa, probes, strict=True)})
            self.items_.extend(self._qa_items(qa, probes))
        if yesno:
            probes = prober.probe_yesno(backend, yesno)
            self.probes_.update({item.id: probe for item, probe in zip(yesno, probes, strict=True)})
            self.items_.extend(self._native_items(yesno, probes))
        self.summary_ = summarise(self.items_, self.dropped_)
        return self

    # ------------------------------------------------------------------ short-answer questions
    def _qa_items(self, qa: Sequence[QAItem], probes: Sequence[KnowledgeProbe]) -> list[YesNoItem]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 1])
        by_type: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(qa):
            by_type[answer_type(item)].append(i)
        out = []
        for i, (item, probe) in enumerate(zip(qa, probes, strict=True)):
            common: dict[str, Any] = {"question": item.question, "subset": probe.subset, "source": item.source,
                      "source_id": item.id, "context": item.context, "gold_answers": list(item.answers),
                      "probe": probe.to_dict(), "seed": cfg.seed}  # fmt: skip
            out.append(YesNoItem(id=f"{item.id}:yes", candidate=item.answers[0], label=True, kind="gold", **common))
            own = probe.greedy.strip()
            own_is_wrong = bool(own) and match_verdict(own, item.answers) == "mismatch"
            if cfg.negatives == "model_wrong_first" and own_is_wrong:
                out.append(YesNoItem(id=f"{item.id}:no", candidate=own, label=False, kind="model_wrong", **common))
                continue
            distractor = self._distractor(qa, i, by_type, rng)
            out.append(YesNoItem(id=f"{item.id}:no", candidate=distractor, label=False, kind="distractor", **common))
        return out

    def _distractor(self, qa: Sequence[QAItem], i: int, by_type: dict[str, list[int]], rng: np.random.Generator) -> str:
        """A gold answer of another question of the same type (any type if none fits) that shares no
        content word with question ``i``'s aliases."""
        item = qa[i]

        def usable(j: int) -> bool:
            return j != i and match_verdict(qa[j].answers[0], item.answers) == "mismatch"

        for pool in (by_type[answer_type(item)], range(len(qa))):
            options = [j for j in pool if usable(j)]
            if options:
                return qa[options[int(rng.integers(len(options)))]].answers[0]
        raise InvalidRequestError(
            f"{item.source}: no distractor for {item.question!r}: every other question shares its answer; "
            "pass more questions"
        )

    # ------------------------------------------------------------------ native yes/no questions
    def _native_items(self, yesno: Sequence[YesNoQuestion], probes: Sequence[KnowledgeProbe]) -> list[YesNoItem]:
        cfg = self.config
        items = [
            YesNoItem(
                id=q.id,
                question=q.question,
                candidate=None,
                label=q.answer,
                subset=probe.subset,
                kind="native",
                source=q.source,
                source_id=q.id,
                context=q.context,
                gold_answers=["yes" if q.answer else "no"],
                probe=probe.to_dict(),
                seed=cfg.seed,
            )
            for q, probe in zip(yesno, probes, strict=True)
        ]
        if not cfg.balance:
            return items
        rng = np.random.default_rng([cfg.seed, 2])
        keep: set[str] = set()
        for subset in SUBSETS:
            yes = [it.id for it in items if it.subset == subset and it.label]
            no = [it.id for it in items if it.subset == subset and not it.label]
            n = min(len(yes), len(no))
            for ids in (yes, no):
                keep.update(ids[j] for j in sorted(rng.choice(len(ids), size=n, replace=False)))
            self.dropped_[subset] = self.dropped_.get(subset, 0) + len(yes) + len(no) - 2 * n
        return [it for it in items if it.id in keep]


def summarise(items: Sequence[YesNoItem], dropped: dict[str, int] | None = None) -> dict[str, Any]:
    """Counts per subset: items, Yes/No labels, candidate kinds (and items dropped to balance labels)."""
    out: dict[str, Any] = {"n_items": len(items), "subsets": {}}
    for subset in SUBSETS:
        rows = [it for it in items if it.subset == subset]
        out["subsets"][subset] = {
            "n_items": len(rows),
            "n_yes": sum(it.label for it in rows),
            "n_no": sum(not it.label for it in rows),
            "kinds": dict(Counter(it.kind for it in rows)),
            "n_questions": len({it.source_id for it in rows}),
            "dropped_to_balance": (dropped or {}).get(subset, 0),
        }
    return out
