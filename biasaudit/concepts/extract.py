"""The concept pipeline: examples -> activations -> one CAV per (concept, layer), saved as an artefact.

``ConceptExtractor(config).fit(backend)`` builds each concept's examples (``sources``), a shared
generic pool, caches their activations (``ActivationStore``), and fits a ``ConceptActivationVector``
per concept and layer. The fitted ``ConceptVectors`` answer "the CAV for X at layer L"
(``vector("sentiment/positive", 12)``), say where each concept is linearly readable
(``best_layer``), and save to / load from a folder:

    <out>/concepts.json        config, model, per-(concept, layer) accuracy and stability
    <out>/cavs.safetensors     "<group>/<concept>@<layer>" -> unit CAV; "generic_mean@<layer>" -> offset
    <out>/examples/*.jsonl     every example with its provenance (prompt, seed, template, source line)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from biasaudit.backend.protocol import Backend, Pooling
from biasaudit.concepts.activations import ActivationStore
from biasaudit.concepts.cav import MIN_EXAMPLES_PER_CLASS, CAVResult, ConceptActivationVector, contrast_accuracy
from biasaudit.concepts.definition import load_concept_group
from biasaudit.concepts.sources import (
    ConceptExamples,
    GenerationConfig,
    Source,
    concept_examples,
    file_examples,
    generic_examples,
)
from biasaudit.errors import InvalidRequestError, TooFewExamplesError
from biasaudit.jsonio import dataclass_from_dict, read_json, write_json_atomic
from biasaudit.progress import progress_bar

if TYPE_CHECKING:
    from biasaudit.concepts.sae import LoadedSAE, SAEConceptResult

# BiasLens aggregates only over layers where a concept is linearly readable (docs/methods.md §1.5).
ACCURACY_THRESHOLD = 0.9


def readability(result: CAVResult) -> float:
    """How well a concept reads out at a layer: the lower of its accuracy against generic text and
    against its own group's other concepts (the latter is immune to sentence-frame differences)."""
    if result.within_group_accuracy is None:
        return result.accuracy
    return min(result.accuracy, result.within_group_accuracy)


@dataclass
class ConceptExtractionConfig:
    """How concept vectors are built (round-trips through JSON with ``to_dict``/``from_dict``).

    ``groups``: concept group names (``probes/concepts``) or YAML paths. ``layers``: ``None`` for every
    decoder block (1..n_layers). ``concept_files``: ``{"group/concept": path}`` user text that replaces
    that concept's examples; ``generic_file``: a user corpus for the negative class.
    """

    groups: list[str]
    layers: list[int] | None = None
    n_examples: int = 200
    n_generic: int = 200
    source: Source = "auto"
    generic_source: Source = "auto"
    pooling: Pooling = "last"
    C: float = 0.1
    n_folds: int = 5
    n_repeats: int = 10
    cv_repeats: int = 3
    seed: int = 0
    concept_files: dict[str, str] = field(default_factory=dict)
    generic_file: str | None = None
    text_field: str = "text"
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConceptExtractionConfig:
        data = dict(data)
        data["generation"] = GenerationConfig.from_dict(data.get("generation", {}))
        return dataclass_from_dict(cls, data, "concept extraction config")


@dataclass
class ConceptVectors:
    """Fitted CAVs of several concepts over layers, with their quality metrics and examples."""

    model: str
    fingerprint: str
    layers: list[int]
    config: ConceptExtractionConfig
    vectors: dict[str, dict[int, np.ndarray]]
    offsets: dict[int, np.ndarray]
    results: list[CAVResult]
    examples: dict[str, ConceptExamples] = field(default_factory=dict)

    @property
    def concepts(self) -> list[str]:
        return list(self.vectors)

    def vector(self, concept: str, layer: int) -> np.ndarray:
        """Unit CAV (d,) of ``concept`` ("group/name", or "name" when unambiguous) at ``layer``."""
        key = self._key(concept)
        if layer not in self.vectors[key]:
            raise InvalidRequestError(f"no CAV for {key} at layer {layer}; fitted layers: {self.layers}")
        return self.vectors[key][layer]

    def _key(self, concept: str) -> str:
        if concept in self.vectors:
            return concept
        matches = [k for k in self.vectors if k.split("/", 1)[-1] == concept]
        if len(matches) == 1:
            return matches[0]
        hint = f"ambiguous: {matches}" if matches else f"known: {self.concepts}"
        raise InvalidRequestError(f"no concept {concept!r} ({hint})")

    def result(self, concept: str, layer: int) -> CAVResult:
        key = self._key(concept)
        for r in self.results:
            if r.concept == key and r.layer == layer:
                return r
        raise InvalidRequestError(f"no CAV for {key} at layer {layer}")

    def best_layer(self, concept: str) -> int:
        """Layer of highest ``readability`` (ties: the shallower layer)."""
        key = self._key(concept)
        rows = [r for r in self.results if r.concept == key]
        return max(rows, key=lambda r: (readability(r), -r.layer)).layer

    def readable_layers(self, concept: str, threshold: float = ACCURACY_THRESHOLD) -> list[int]:
        """Layers where the concept is linearly readable: ``readability >= threshold``."""
        key = self._key(concept)
        return [r.layer for r in self.results if r.concept == key and readability(r) >= threshold]

    def summary(self) -> list[dict[str, Any]]:
        """Per concept: best layer, its accuracy and stability, layers at or above the threshold."""
        out = []
        for concept in self.concepts:
            best = self.result(concept, self.best_layer(concept))
            out.append(
                {
                    "concept": concept,
                    "best_layer": best.layer,
                    "accuracy": best.accuracy,
                    "within_group_accuracy": best.within_group_accuracy,
                    "stability": best.stability,
                    "readable_layers": self.readable_layers(concept),
                    "n_examples": best.n_concept,
                }
            )
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, out_dir: str | Path) -> Path:
        from safetensors.numpy import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"{c}@{layer}": v.astype(np.float32) for c, per in self.vectors.items() for layer, v in per.items()}
        tensors.update({f"generic_mean@{layer}": v.astype(np.float32) for layer, v in self.offsets.items()})
        tmp = out / "cavs.safetensors.tmp"
        save_file(tensors, str(tmp), metadata={"model": self.model, "fingerprint": self.fingerprint})
        tmp.replace(out / "cavs.safetensors")
        for name, examples in self.examples.items():
            examples.save_jsonl(out / "examples" / f"{name.replace('/', '__')}.jsonl")
        write_json_atomic(
            out / "concepts.json",
            {
                "model": self.model,
                "fingerprint": self.fingerprint,
                "layers": self.layers,
                "config": self.config.to_dict(),
                "summary": self.summary(),
                "cavs": [r.to_dict() for r in self.results],
                "examples": {k: {"n": len(v), "rejected": v.rejected} for k, v in self.examples.items()},
            },
        )
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> ConceptVectors:
        from safetensors.numpy import load_file

        out = Path(out_dir)
        meta = read_json(out / "concepts.json")
        if not isinstance(meta, dict) or not (out / "cavs.safetensors").is_file():
            raise InvalidRequestError(
                f"{out} is not a concept-vectors folder (needs a readable concepts.json and cavs.safetensors)"
            )
        tensors = load_file(str(out / "cavs.safetensors"))
        vectors: dict[str, dict[int, np.ndarray]] = {}
        offsets: dict[int, np.ndarray] = {}
        for key, value in tensors.items():
            name, layer = key.rsplit("@", 1)
            if name == "generic_mean":
                offsets[int(layer)] = value
            else:
                vectors.setdefault(name, {})[int(layer)] = value
        examples = {
            ex.concept: ex for ex in (ConceptExamples.load_jsonl(p) for p in sorted((out / "examples").glob("*.jsonl")))
        }
        return cls(
            model=meta["model"],
            fingerprint=meta["fingerprint"],
            layers=[int(x) for x in meta["layers"]],
            config=ConceptExtractionConfig.from_dict(meta["config"]),
            vectors=vectors,
            offsets=offsets,
            results=[CAVResult(**r) for r in meta["cavs"]],
            examples=examples,
        )


def vectors_from_activations(
    activations: Mapping[str, Mapping[int, np.ndarray]],
    config: ConceptExtractionConfig,
    *,
    model: str = "",
    fingerprint: str = "",
    progress: bool = False,
    examples: Mapping[str, ConceptExamples] | None = None,
) -> ConceptVectors:
    """CAVs for every concept in ``activations`` ({"group/concept" or "generic": {layer: (n, d)}}).

    Each concept is fitted against "generic"; concepts sharing a group ("group/...") also get the
    within-group accuracy. The piece of ``ConceptExtractor.fit`` that needs no model, so precomputed
    (or synthetic) activations work too. ``examples`` (rows in the order of ``activations``) give the
    cross-validation groups: the accuracy against generic text holds out whole templates (the frames
    differ from generic text's, so sentence folds would read the frame), the within-group accuracy holds
    out whole seed words (siblings share their frames, so held-out words are what is left to generalise to).
    """

    def labels(key: str, by: Literal["template", "word"]) -> list[str] | None:
        return examples[key].group_labels(by) if examples and key in examples else None

    if "generic" not in activations:
        raise InvalidRequestError("activations need a 'generic' entry (the negative class)")
    generic = activations["generic"]
    layers = sorted(generic)
    concepts = [k for k in activations if k != "generic"]
    vectors: dict[str, dict[int, np.ndarray]] = {}
    results: list[CAVResult] = []
    offsets: dict[int, np.ndarray] = {}
    with progress_bar("CAVs", len(concepts) * len(layers), enabled=progress) as advance:
        for key in concepts:
            vectors[key] = {}
            siblings = [k for k in concepts if k != key and k.split("/")[0] == key.split("/")[0]]
            for layer in layers:
                cav = ConceptActivationVector(
                    C=config.C,
                    n_folds=config.n_folds,
                    n_repeats=config.n_repeats,
                    cv_repeats=config.cv_repeats,
                    random_state=config.seed,
                ).fit(activations[key][layer], generic[layer], labels(key, "template"), labels("generic", "template"))
                within = None
                if siblings:
                    rest = np.concatenate([activations[k][layer] for k in siblings])
                    sibling_words = [labels(k, "word") for k in siblings]
                    within = contrast_accuracy(
                        activations[key][layer], rest, C=config.C, n_folds=config.n_folds, seed=config.seed,
                        groups_a=labels(key, "word"),
                        groups_b=None if None in sibling_words else [g for w in sibling_words for g in w or []],
                    )  # fmt: skip
                vectors[key][layer] = cav.cav_.astype(np.float32)
                offsets[layer] = cav.offset_.astype(np.float32)
                results.append(cav.result(key, layer, within))
                advance(1)
    return ConceptVectors(
        model=model, fingerprint=fingerprint, layers=layers, config=config, vectors=vectors, offsets=offsets,
        results=results,
    )  # fmt: skip


class ConceptExtractor:
    """Build examples, activations and CAVs for the concepts of ``config`` (scikit-learn style).

    ``fit(backend, generator=None, store=None, sae=None)``: ``generator`` writes generated examples
    (default: the audited backend itself); ``store`` caches activations (default: an
    ``ActivationStore`` under ``cache_dir``, itself defaulting to ``$BIASAUDIT_CACHE``, which also
    keeps raw generations). Results: ``vectors_`` (a ``ConceptVectors``), ``activations_``
    ({concept or "generic": {layer: (n, d)}}) for downstream scoring, ``sae_results_``.
    """

    def __init__(
        self, config: ConceptExtractionConfig, *, cache_dir: str | Path | None = None, progress: bool = True
    ) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.progress = progress

    def _cache_root(self) -> Path:
        from biasaudit.models import cache_dir

        return Path(self.cache_dir) if self.cache_dir is not None else cache_dir()

    def build_examples(self, backend: Backend, generator: Backend | None = None) -> dict[str, ConceptExamples]:
        """{"group/concept": examples, ..., "generic": examples}; too few examples raise ``TooFewExamplesError``."""
        cfg = self.config
        cache = self._cache_root()
        gen = generator or backend
        out: dict[str, ConceptExamples] = {}
        for group_name in cfg.groups:
            group = load_concept_group(group_name)
            if group.kind == "generic":
                raise InvalidRequestError(f"{group_name} is the generic pool, not a concept group")
            for spec in group.concepts:
                key = f"{group.name}/{spec.name}"
                if key in cfg.concept_files:
                    examples = file_examples(
                        cfg.concept_files[key], key, text_field=cfg.text_field, n=cfg.n_examples, seed=cfg.seed
                    )
                else:
                    examples = concept_examples(
                        group, spec, source=cfg.source, generator=gen, n=cfg.n_examples, seed=cfg.seed,
                        config=cfg.generation, cache_dir=cache,
                    )  # fmt: skip
                out[key] = examples
        unknown = sorted(set(cfg.concept_files) - set(out))
        if unknown:
            raise InvalidRequestError(f"concept_files names concepts not in the groups: {unknown}")
        if cfg.generic_file:
            generic = file_examples(
                cfg.generic_file, "generic", text_field=cfg.text_field, n=cfg.n_generic, seed=cfg.seed
            )
        else:
            generic_source = cfg.generic_source
            if generic_source == "auto":
                generic_source = "generated" if cfg.source == "generated" else "templates"
            generic = generic_examples(
                source=generic_source, generator=gen, n=cfg.n_generic, seed=cfg.seed, config=cfg.generation,
                cache_dir=cache,
            )  # fmt: skip
        out["generic"] = generic
        for key, examples in out.items():
            if len(examples) < MIN_EXAMPLES_PER_CLASS:
                raise TooFewExamplesError(
                    f"{key}: only {len(examples)} usable examples after filtering (need >= "
                    f"{MIN_EXAMPLES_PER_CLASS}; rejected: {examples.rejected}); add seed words or templates, "
                    "raise n, or pass a text file"
                )
        return out

    def fit(
        self,
        backend: Backend,
        generator: Backend | None = None,
        store: ActivationStore | None = None,
        sae: LoadedSAE | None = None,
    ) -> ConceptExtractor:
        """Examples, activations and CAVs; with ``sae`` (``load_sae``), also each concept in SAE space
        at the SAE's layer (``sae_results_``: {concept: SAEConceptResult})."""
        cfg = self.config
        layers = list(cfg.layers) if cfg.layers is not None else list(range(1, backend.n_layers + 1))
        if sae is not None and sae.layer not in layers:
            layers.append(sae.layer)
        store = store or ActivationStore(backend, self._cache_root(), pooling=cfg.pooling, progress=self.progress)
        examples = self.build_examples(backend, generator)
        all_texts = list(dict.fromkeys(t for ex in examples.values() for t in ex.texts))
        acts = store.get(all_texts, layers)
        layers = sorted(acts)
        row = {t: i for i, t in enumerate(all_texts)}
        self.activations_ = {
            key: {layer: acts[layer][[row[t] for t in ex.texts]] for layer in layers} for key, ex in examples.items()
        }
        self.vectors_ = vectors_from_activations(
            self.activations_, cfg, model=backend.name, fingerprint=backend.fingerprint, progress=self.progress,
            examples=examples,
        )  # fmt: skip
        self.vectors_.examples = examples
        self.sae_results_ = self._sae_results(backend, sae, examples) if sae is not None else {}
        return self

    def _sae_results(
        self, backend: Backend, sae: LoadedSAE, examples: dict[str, ConceptExamples]
    ) -> dict[str, SAEConceptResult]:
        from biasaudit.concepts.sae import SAEConceptAnalysis

        cfg = self.config
        generic = self.activations_["generic"][sae.layer]
        out = {}
        for key, ex in examples.items():
            if key == "generic":
                continue
            analysis = SAEConceptAnalysis(
                sae, n_folds=cfg.n_folds, n_repeats=cfg.n_repeats, C=cfg.C, random_state=cfg.seed
            ).fit(
                self.activations_[key][sae.layer], generic, ex.texts, examples["generic"].texts,
                concept=key, backend=backend,
            )  # fmt: skip
            out[key] = analysis.result_
        return out

    def save(self, out_dir: str | Path) -> Path:
        """``vectors_.save(out_dir)`` plus ``sae_concepts.json`` when an SAE was given."""
        out = self.vectors_.save(out_dir)
        if self.sae_results_:
            write_json_atomic(out / "sae_concepts.json", {k: v.to_dict() for k, v in self.sae_results_.items()})
        return out
