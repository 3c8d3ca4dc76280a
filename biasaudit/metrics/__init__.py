"""Traditional bias benchmarks on the shared backend: CrowS-Pairs, BBQ, StereoSet, WinoBias, Winogender.

Every benchmark has the same shape: a loader that reads the files as their authors distribute them
(``load_crows_pairs(source)``, ...), an estimator whose hyper-parameters are keyword arguments
(``CrowSPairs(limit=200, seed=0)``), and ``.evaluate(backend, source) -> <Benchmark>Result``, a
dataclass with ``overall``, a per-category breakdown, the per-item log-likelihoods and ``to_dict()``.
All of a benchmark's requests go to the backend in one ``loglikelihood`` call, so its batching and
prefix sharing apply across the whole set. Definitions, conventions and sources: ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from biasaudit.backend.protocol import Backend
from biasaudit.errors import DatasetNotFoundError, InvalidRequestError
from biasaudit.metrics.bbq import BBQ, BBQResult, load_bbq
from biasaudit.metrics.crows_pairs import CrowSPairs, CrowSPairsResult, load_crows_pairs
from biasaudit.metrics.stereoset import StereoSet, StereoSetResult, load_stereoset
from biasaudit.metrics.winobias import WinoBias, WinoBiasResult, load_winobias
from biasaudit.metrics.winogender import Winogender, WinogenderResult, load_winogender
from biasaudit.stats import Estimate

BENCHMARKS = ("crows_pairs", "bbq", "stereoset", "winobias", "winogender")

__all__ = [
    "BBQ",
    "BENCHMARKS",
    "BBQResult",
    "CrowSPairs",
    "CrowSPairsResult",
    "Estimate",
    "StereoSet",
    "StereoSetResult",
    "WinoBias",
    "WinoBiasResult",
    "Winogender",
    "WinogenderResult",
    "load_bbq",
    "load_crows_pairs",
    "load_stereoset",
    "load_winobias",
    "load_winogender",
    "run_benchmark",
]


# Each benchmark's estimator from the audit's settings; ``apply_chat_template`` matters only to the
# question-style benchmarks (BBQ, WinoBias, Winogender): CrowS-Pairs and StereoSet score bare sentences.
ESTIMATORS: dict[str, Callable[[int | None, int, bool], CrowSPairs | BBQ | StereoSet | WinoBias | Winogender]] = {
    "crows_pairs": lambda limit, seed, chat: CrowSPairs(limit=limit, seed=seed),
    "bbq": lambda limit, seed, chat: BBQ(limit=limit, seed=seed, apply_chat_template=chat),
    "stereoset": lambda limit, seed, chat: StereoSet(limit=limit, seed=seed),
    "winobias": lambda limit, seed, chat: WinoBias(limit=limit, seed=seed, apply_chat_template=chat),
    "winogender": lambda limit, seed, chat: Winogender(limit=limit, seed=seed, apply_chat_template=chat),
}


def run_benchmark(
    name: str,
    backend: Backend,
    *,
    limit: int | None = None,
    seed: int = 0,
    source: str | Path | None = None,
    apply_chat_template: bool = False,
    include_items: bool = False,
) -> dict[str, Any]:
    """Benchmark ``name`` as an audit suite: its JSON-ready result, or ``{"skipped": reason}`` when its
    data are absent. ``apply_chat_template`` applies to the question-style benchmarks (BBQ, WinoBias,
    Winogender); CrowS-Pairs and StereoSet score bare sentences, where a chat turn has no place, and say so.
    ``include_items`` adds the per-item scores (``"items"``).
    """
    if name not in ESTIMATORS:
        raise InvalidRequestError(f"unknown benchmark {name!r}; available: {list(BENCHMARKS)}")
    estimator = ESTIMATORS[name](limit, seed, apply_chat_template)
    try:
        result = estimator.evaluate(backend, source).to_dict(include_items=include_items)
    except DatasetNotFoundError as exc:
        return {"skipped": str(exc)}
    if apply_chat_template and name in ("crows_pairs", "stereoset"):
        result["note"] = "apply_chat_template ignored: this benchmark scores bare sentences, not answers to a prompt"
    return result
