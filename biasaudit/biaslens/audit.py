"""Run BiasLens probe suites on a model: one concept extraction for every group, then every probe.

All suites share one generic pool and one activation cache, so adding a suite costs only its new
concepts. Category scores average the probes of a suite; their CI averages the probes' half-sample
estimates split by split (every probe's split s halves the same examples of a shared concept), so it is
a real interval for the category mean, not a mean of intervals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.biaslens.probes import ProbeSuite, load_probe_suite, shipped_suites
from biasaudit.biaslens.score import SPACES, BiasLens, BiasLensResult, half_sample_interval
from biasaudit.concepts.extract import ACCURACY_THRESHOLD, ConceptExtractionConfig, ConceptExtractor
from biasaudit.errors import InvalidRequestError


@dataclass
class BiasLensConfig:
    """Settings of a BiasLens audit (JSON round-trip). ``suites`` empty = every shipped suite;
    ``layers`` None = every third decoder block (plus the last). ``sae``: a sparse autoencoder (folder
    or sae-lens release, see ``load_sae``); with one, ``space`` defaults to "both" (residual and SAE
    scores side by side), without one it must be "residual"."""

    suites: list[str] = field(default_factory=list)
    layers: list[int] | None = None
    n_examples: int = 200
    n_generic: int = 200
    source: str = "auto"
    n_repeats: int = 5
    cv_repeats: int = 1
    pooling: str = "last"
    n_splits: int = 50
    threshold: float = ACCURACY_THRESHOLD
    readable_by: str = "generic"
    seed: int = 0
    n_jobs: int | None = -1
    sae: str | None = None
    space: str | None = None

    def resolved_space(self) -> str:
        return self.space or ("both" if self.sae else "residual")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CategoryScore:
    category: str
    score: float | None
    ci: tuple[float, float] | None
    n_probes: int
    n_scored: int
    traditional: dict[str, str]
    note: str | None = None
    se: float | None = None
    p_value: float | None = None
    space: str = "residual"
    sae: CategoryScore | None = None  # the SAE-space score beside a residual one (space "both")

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["ci"] = list(self.ci) if self.ci else None
        out["sae"] = self.sae.to_dict() if self.sae is not None else None
        return out


def default_layers(n_layers: int) -> list[int]:
    return sorted({*range(3, n_layers + 1, 3), n_layers})


class BiasLensAudit:
    """``BiasLensAudit(config).run(backend)``: probes and category scores (``probes_``, ``categories_``)."""

    def __init__(
        self, config: BiasLensConfig | None = None, *, cache_dir: str | Path | None = None, progress: bool = True
    ):
        self.config = config or BiasLensConfig()
        self.cache_dir = cache_dir
        self.progress = progress

    def suites(self) -> list[ProbeSuite]:
        return [load_probe_suite(name) for name in (self.config.suites or shipped_suites())]

    def run(self, backend: Backend) -> BiasLensAudit:
        cfg = self.config
        suites = self.suites()
        groups = list(dict.fromkeys(g for suite in suites for g in suite.groups))
        layers = list(cfg.layers or default_layers(backend.n_layers))
        space = cfg.resolved_space()
        if space not in SPACES:
            raise InvalidRequestError(f"space must be one of {SPACES}, not {space!r}")
        if space != "residual" and not cfg.sae:
            raise InvalidRequestError(f"space={space!r} needs an SAE (BiasLensConfig.sae / --sae)")
        sae = None
        if cfg.sae:
            from biasaudit.concepts.sae import load_sae

            sae = load_sae(cfg.sae, backend=backend)
        extraction = ConceptExtractionConfig(
            groups=groups, layers=layers, n_examples=cfg.n_examples, n_generic=cfg.n_generic,
            source=cfg.source,  # type: ignore[arg-type]
            n_repeats=cfg.n_repeats, cv_repeats=cfg.cv_repeats, seed=cfg.seed,
            pooling=cfg.pooling,  # type: ignore[arg-type]
        )  # fmt: skip
        self.extractor_ = ConceptExtractor(extraction, cache_dir=self.cache_dir, progress=self.progress).fit(
            backend, sae=sae
        )
        lens = BiasLens(
            threshold=cfg.threshold,
            readable_by=cfg.readable_by,
            n_splits=cfg.n_splits,
            seed=cfg.seed,
            n_jobs=cfg.n_jobs,
            space=space,
        ).fit(self.extractor_.vectors_, self.extractor_.activations_, sae=sae)
        self.probes_: list[BiasLensResult] = []
        self.categories_: list[CategoryScore] = []
        for suite in suites:
            results = [
                lens.score(p.target, (p.references[0], p.references[1]), category=suite.category) for p in suite.probes
            ]
            self.probes_.extend(results)
            category = category_score(suite, results, lens)
            if space == "both" and lens.sae_lens_ is not None:
                category.sae = category_score(suite, [r.sae for r in results if r.sae is not None], lens.sae_lens_)
                category.sae.space = "sae"
            elif space == "sae":
                category.space = "sae"
            self.categories_.append(category)
        return self

    def to_dict(self) -> dict[str, Any]:
        vectors = self.extractor_.vectors_
        return {
            "config": self.config.to_dict(),
            "layers": vectors.layers,
            "categories": [c.to_dict() for c in self.categories_],
            "probes": [p.to_dict() for p in self.probes_],
            "concepts": vectors.summary(),
            "sae_concepts": {k: v.to_dict() for k, v in self.extractor_.sae_results_.items()},
        }


def category_score(suite: ProbeSuite, results: list[BiasLensResult], lens: BiasLens) -> CategoryScore:
    """Mean probe score of a suite; se, CI and p from the split-by-split means of the probes' halves."""
    scored = [r for r in results if r.score is not None]
    out = CategoryScore(suite.category, None, None, len(results), len(scored), dict(suite.traditional))
    if not scored:
        out.note = "no probe had its target and references readable at any layer"
        return out
    out.score = float(np.mean([r.score for r in scored]))
    halves = [r.halves for r in scored if r.halves is not None]
    if len(halves) == len(scored):
        out.se, out.ci, out.p_value = half_sample_interval(
            out.score, np.mean(np.stack(halves), axis=0), lens.confidence
        )
    else:
        out.note = "no CI: some probes had too few examples (or too unstable CAVs) for half-sample estimates"
    return out
