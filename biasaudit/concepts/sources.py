"""Concept examples without a manual test set (docs/methods.md §1.1).

Three sources, each returning ``ConceptExamples`` with full provenance (so a run can be reproduced):

* **templates** -- every ``template x seed word`` of a concept group (``probes/concepts``);
* **generated** -- a generator model (default: the audited model) writes one sentence per prompt from
  the concept's description under varied instructions; outputs are cut to one sentence, filtered
  (empty, too short/long, refusals) and de-duplicated (exact and near); raw generations are cached
  on disk keyed by (generator fingerprint, prompts, seed, sampling settings);
* **user text** -- a ``.txt`` (one example per line) or ``.jsonl`` file, or a ``datasets`` column.

Generic text (the negative class) comes from the same machinery: ``generic.yaml``'s topics for
generation, its templates for a fast deterministic pool, or a user corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from biasaudit.backend.protocol import Backend
from biasaudit.concepts.definition import PLACEHOLDER, ConceptGroup, ConceptSpec, load_concept_group
from biasaudit.concepts.text_filters import first_sentence, near_duplicates, reject_reason
from biasaudit.errors import InvalidRequestError
from biasaudit.jsonio import dataclass_from_dict, write_json_atomic

Source = Literal["auto", "templates", "generated"]

# Varied instructions (ours): the same concept asked for in different registers, so the examples do not
# share one sentence shape that a CAV could latch onto.
INSTRUCTIONS: tuple[str, ...] = (
    "Write one sentence about the topic below.",
    "Write a single sentence that someone might say in conversation about the topic below.",
    "Write one sentence from a short story that involves the topic below.",
    "Write one sentence from a news report related to the topic below.",
    "Write one sentence from a personal diary entry about the topic below.",
    "Write a short, plain sentence describing an everyday situation that involves the topic below.",
    "Write one sentence from a letter to a friend that mentions the topic below.",
    "Write one sentence a teacher might use as an example of the topic below.",
)


@dataclass(frozen=True)
class ExampleRecord:
    """One example text and where it came from."""

    text: str
    source: str
    prompt: str | None = None
    seed: int | None = None
    template: str | None = None
    word: str | None = None
    origin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class ConceptExamples:
    """The examples of one concept (``group/name``), with rejected-output counts by reason."""

    concept: str
    records: list[ExampleRecord]
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def group_labels(self, by: Literal["template", "word"]) -> list[str] | None:
        """One cross-validation group per example: the template it was built from (``by="template"``) or
        its seed word (``by="word"``; for generated text, the word the prompt suggested). None when no
        example records one (user text): folds then hold out single sentences."""
        values = [getattr(r, by) for r in self.records]
        if all(v is None for v in values):
            return None
        return [f"{by}:{v}" if v is not None else f"text:{r.text}" for v, r in zip(values, self.records, strict=True)]

    def save_jsonl(self, path: str | Path) -> Path:
        """One JSON record per line; the first line is a header with the concept and rejection counts."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"concept": self.concept, "rejected": self.rejected, "n": len(self.records)})]
        lines += [json.dumps(r.to_dict(), ensure_ascii=False) for r in self.records]
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load_jsonl(cls, path: str | Path) -> ConceptExamples:
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        if not rows or "concept" not in rows[0]:
            raise InvalidRequestError(f"{path}: not a concept-examples file (no header line)")
        header, body = rows[0], rows[1:]
        return cls(header["concept"], [ExampleRecord(**r) for r in body], dict(header.get("rejected", {})))


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling and filtering settings for generated examples (JSON round-trip via ``asdict``)."""

    max_new_tokens: int = 48
    temperature: float = 0.9
    top_p: float = 0.95
    min_words: int = 4
    max_words: int = 40
    near_duplicate_threshold: float = 0.9
    max_rounds: int = 4
    apply_chat_template: bool | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        return dataclass_from_dict(cls, data, "generation config")


# ---------------------------------------------------------------------------- templates
def template_texts(group: ConceptGroup, spec: ConceptSpec) -> list[tuple[str, str, str]]:
    """Every distinct (sentence, template, word) of ``spec`` in ``group``, in a fixed order."""
    out: dict[str, tuple[str, str, str]] = {}
    for template in group.templates_for(spec):
        for word in spec.seed_words:
            sentence = template.replace(PLACEHOLDER, word)
            out.setdefault(sentence, (sentence, template, word))
    return list(out.values())


def template_examples(group: ConceptGroup, spec: ConceptSpec, n: int | None = None, seed: int = 0) -> ConceptExamples:
    """Templates x seed words; a seeded sample of ``n`` when there are more."""
    rows = template_texts(group, spec)
    if n is not None and len(rows) > n:
        rows = random.Random(seed).sample(rows, n)
    records = [ExampleRecord(text=s, source="template", template=t, word=w, seed=seed) for s, t, w in rows]
    return ConceptExamples(f"{group.name}/{spec.name}", records)


# ---------------------------------------------------------------------------- generated
def generation_prompt(instruction: str, topic: str, word: str | None) -> str:
    hint = f'\nIt may use the word "{word}".' if word else ""
    return f"{instruction}\nTopic: {topic}{hint}\nReply with the sentence only."


def _use_chat(generator: Backend, config: GenerationConfig) -> bool:
    if config.apply_chat_template is not None:
        return config.apply_chat_template
    try:
        generator.format_chat("x")
    except InvalidRequestError:
        return False
    return True


def _cached_generate(
    generator: Backend, prompts: list[str], seed: int, config: GenerationConfig, chat: bool, cache_dir: Path | None
) -> list[str]:
    """``generator.generate`` (sampled, seeded), answered from the cache when these exact prompts ran before."""
    key = hashlib.sha256(
        json.dumps([generator.fingerprint, prompts, seed, dataclasses.asdict(config), chat]).encode()
    ).hexdigest()[:32]
    path = cache_dir / "generated" / f"{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            cached = json.loads(path.read_text())
            if isinstance(cached, list) and len(cached) == len(prompts):
                return [str(x) for x in cached]
        except (OSError, ValueError):
            pass  # corrupt entry: regenerate and overwrite below
    outputs = generator.generate(
        prompts,
        max_new_tokens=config.max_new_tokens,
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=seed,
        apply_chat_template=chat,
    )
    if path is not None:
        write_json_atomic(path, outputs)
    return outputs


def generated_examples(
    generator: Backend,
    concept: str,
    topics: Sequence[str],
    words: Sequence[str] = (),
    *,
    n: int = 200,
    seed: int = 0,
    config: GenerationConfig | None = None,
    cache_dir: Path | None = None,
) -> ConceptExamples:
    """Up to ``n`` clean, distinct sentences generated from (instruction, topic, word) cues.

    Rounds of generation continue until ``n`` examples survive the filters or ``config.max_rounds``
    rounds have run (each round asks for 1.5x what is still missing). Rejections are counted by reason.
    """
    if not topics:
        raise InvalidRequestError(f"{concept}: generation needs at least one topic/description")
    config = config or GenerationConfig()
    chat = _use_chat(generator, config)
    rng = random.Random(seed)
    records: list[ExampleRecord] = []
    rejected: Counter[str] = Counter()
    for round_ in range(config.max_rounds):
        missing = n - len(records)
        if missing <= 0:
            break
        count = math.ceil(missing * 1.5) + 4
        cues = [
            (rng.choice(INSTRUCTIONS), rng.choice(list(topics)), rng.choice(list(words)) if words else None)
            for _ in range(count)
        ]
        prompts = [generation_prompt(*cue) for cue in cues]
        round_seed = seed * 1000 + round_
        outputs = _cached_generate(generator, prompts, round_seed, config, chat, cache_dir)
        fresh: list[ExampleRecord] = []
        for (_, _, word), prompt, raw in zip(cues, prompts, outputs, strict=True):
            text = first_sentence(raw)
            reason = reject_reason(text, min_words=config.min_words, max_words=config.max_words)
            if reason:
                rejected[reason] += 1
                continue
            fresh.append(ExampleRecord(text=text, source="generated", prompt=prompt, seed=round_seed, word=word))
        pool = records + fresh
        drop = set(near_duplicates([r.text for r in pool], config.near_duplicate_threshold))
        rejected["duplicate"] += len(drop)
        records = [r for i, r in enumerate(pool) if i not in drop][:n]
    return ConceptExamples(concept, records, dict(rejected))


# ---------------------------------------------------------------------------- user text
def iter_text_file(path: str | Path, text_field: str = "text") -> Iterator[tuple[int, str]]:
    """(line number, text) from a ``.txt`` file (one text per non-empty line) or a ``.jsonl`` file
    (string field ``text_field``), streamed; a bad line is reported with its file and line number."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRequestError(f"text file {path} does not exist")
    if path.suffix not in (".txt", ".jsonl"):
        raise InvalidRequestError(f"text file {path}: use .txt (one text per line) or .jsonl")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if path.suffix == ".txt":
                yield lineno, line.strip()
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                raise InvalidRequestError(f"{path}:{lineno}: no string field {text_field!r}")
            if row[text_field].strip():
                yield lineno, row[text_field].strip()


def file_examples(
    path: str | Path, concept: str, *, text_field: str = "text", n: int | None = None, seed: int = 0
) -> ConceptExamples:
    """Examples from a ``.txt`` file (one per non-empty line) or ``.jsonl`` (field ``text_field``).

    Exact duplicates are dropped; a malformed JSONL line is reported with its file and line number.
    """
    records = [
        ExampleRecord(text=text, source="file", origin=f"{path}:{lineno}")
        for lineno, text in iter_text_file(path, text_field)
    ]
    return _dedupe_and_sample(concept, records, n, seed)


def _dedupe_and_sample(concept: str, records: list[ExampleRecord], n: int | None, seed: int) -> ConceptExamples:
    first: dict[str, ExampleRecord] = {}
    for r in records:
        first.setdefault(r.text, r)
    unique = list(first.values())
    rejected = {"duplicate": len(records) - len(unique)} if len(unique) < len(records) else {}
    if n is not None and len(unique) > n:
        unique = random.Random(seed).sample(unique, n)
    return ConceptExamples(concept, unique, rejected)


# ---------------------------------------------------------------------------- one entry point
def concept_examples(
    group: ConceptGroup,
    spec: ConceptSpec,
    *,
    source: Source = "auto",
    generator: Backend | None = None,
    n: int = 200,
    seed: int = 0,
    config: GenerationConfig | None = None,
    cache_dir: Path | None = None,
) -> ConceptExamples:
    """Examples of one concept. ``auto``: templates when the concept has templates and seed words,
    otherwise generated from its description."""
    has_templates = bool(group.templates_for(spec)) and bool(spec.seed_words)
    if source == "auto":
        source = "templates" if has_templates else "generated"
    if source == "templates":
        if not has_templates:
            raise InvalidRequestError(
                f"{group.name}/{spec.name} has no templates or seed words; use source='generated' or a text file"
            )
        return template_examples(group, spec, n, seed)
    if source == "generated":
        if generator is None:
            raise InvalidRequestError("source='generated' needs a generator backend")
        return generated_examples(
            generator, f"{group.name}/{spec.name}", [spec.description], spec.seed_words,
            n=n, seed=seed, config=config, cache_dir=cache_dir,
        )  # fmt: skip
    raise InvalidRequestError(f"unknown concept source {source!r}; use auto, templates or generated")


def generic_examples(
    *,
    source: Source = "auto",
    generator: Backend | None = None,
    n: int = 200,
    seed: int = 0,
    config: GenerationConfig | None = None,
    cache_dir: Path | None = None,
    group: ConceptGroup | None = None,
) -> ConceptExamples:
    """Generic (negative-class) text from ``probes/concepts/generic.yaml``: ``generated`` from its topics
    (``auto`` when a generator is given), else ``templates``."""
    group = group or load_concept_group("generic")
    if source == "auto":
        source = "generated" if generator is not None else "templates"
    if source == "generated":
        if generator is None:
            raise InvalidRequestError("generated generic text needs a generator backend")
        return generated_examples(
            generator, "generic", group.topics or [group.description], (), n=n, seed=seed, config=config,
            cache_dir=cache_dir,
        )  # fmt: skip
    examples = template_examples(group, group.concepts[0], n, seed)
    examples.concept = "generic"
    return examples


def generic_texts(backend: Backend, n: int, seed: int = 0, cache_dir: Path | None = None) -> list[str]:
    """``n`` generated generic sentences (fewer if the filters reject too many): a default SAE corpus."""
    return generic_examples(source="generated", generator=backend, n=n, seed=seed, cache_dir=cache_dir).texts
