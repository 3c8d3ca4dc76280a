"""``ICLPrompt``: a few-shot prompt with a slot for the query, and the labels scored after it.

Every calibrator and measurement scores inputs the same way: fill the query template, append it to
the fixed prefix (instruction + demonstrations), and ask the backend for the label log-probs. The
prefix is identical for every query, so the backend's shared-prefix reuse encodes it only once.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from biasaudit.backend.protocol import Backend, LabelMode
from biasaudit.errors import InvalidRequestError

Query = str | Mapping[str, str]


@dataclass(frozen=True)
class ICLPrompt:
    """What to score: ``prefix + query_template.format(**fields)`` followed by each label.

    ``labels`` are the continuations as scored (usually with a leading space: " positive").
    ``query_template`` names its input slots with ``{field}``; a plain string query fills the only
    slot. ``mode`` / ``length_normalize`` are passed to ``Backend.label_log_probs``.
    """

    query_template: str
    labels: tuple[str, ...]
    prefix: str = ""
    mode: LabelMode = "first_token"
    length_normalize: bool = False
    apply_chat_template: bool = False
    fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(self.query_template) if name))
        if not names:
            raise InvalidRequestError(
                f"the query template {self.query_template!r} has no input placeholder such as {{text}}"
            )
        object.__setattr__(self, "fields", names)
        object.__setattr__(self, "labels", tuple(self.labels))
        if len(self.labels) < 2:
            raise InvalidRequestError("a classification prompt needs at least two labels")
        if any(not label.strip() for label in self.labels):
            raise InvalidRequestError(f"labels must not be empty: {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise InvalidRequestError(f"labels contain duplicates: {list(self.labels)}")

    def fill(self, query: Query) -> str:
        """The full prompt for one query (a string for one-slot templates, or a field mapping)."""
        if isinstance(query, str):
            if len(self.fields) != 1:
                raise InvalidRequestError(f"this template needs the fields {list(self.fields)}, not a single string")
            values = {self.fields[0]: query}
        else:
            missing = [f for f in self.fields if f not in query]
            if missing:
                raise InvalidRequestError(f"query lacks field(s) {missing}")
            values = {f: query[f] for f in self.fields}
        return self.prefix + self.query_template.format(**values)

    def uniform(self, text: str) -> dict[str, str]:
        """A query with every slot holding ``text`` (content-free inputs fill all slots)."""
        return dict.fromkeys(self.fields, text)

    def label_log_probs(self, backend: Backend, queries: Sequence[Query]) -> np.ndarray:
        """Raw label log-probs, array (n_queries, n_labels)."""
        return backend.label_log_probs(
            [self.fill(q) for q in queries],
            list(self.labels),
            mode=self.mode,
            length_normalize=self.length_normalize,
            apply_chat_template=self.apply_chat_template,
        )

    def truncated_labels(self, backend: Backend) -> list[str] | None:
        """Labels of several tokens after this prompt, of which ``first_token`` mode scores only the first
        (the backend also warns); [] in ``full_sequence`` mode, None if the backend cannot tell."""
        if self.mode != "first_token":
            return []
        loglikelihood = getattr(backend, "loglikelihood", None)
        if loglikelihood is None:
            return None
        context = self.fill(self.uniform("N/A"))
        results = loglikelihood([(context, label) for label in self.labels])
        return [label for label, r in zip(self.labels, results, strict=True) if r.n_tokens > 1]

    def fingerprint(self) -> str:
        """Short hash of everything that defines the prompt (a prior is only valid for its prompt)."""
        data = {k: v for k, v in asdict(self).items() if k != "fields"}
        return hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "fields"}
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ICLPrompt:
        return cls(**{**data, "labels": tuple(data["labels"])})


def renormalise(probs: np.ndarray) -> np.ndarray:
    """Rows of ``probs`` (n, K) scaled to sum to one."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs / probs.sum(axis=-1, keepdims=True)


def softmax_rows(log_probs: np.ndarray) -> np.ndarray:
    """Label distribution per row from (possibly unnormalised) log-probs (n, K), computed stably."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    shifted = log_probs - log_probs.max(axis=-1, keepdims=True)
    return renormalise(np.exp(shifted))


Demonstration = tuple[Query, int | str]


def build_icl_prompt(
    template: str,
    labels: Sequence[str],
    demonstrations: Sequence[Demonstration] = (),
    *,
    instruction: str = "",
    separator: str = "\n\n",
    label_prefix: str = " ",
    mode: LabelMode = "first_token",
    length_normalize: bool = False,
    apply_chat_template: bool = False,
) -> ICLPrompt:
    """Turn a demonstration template, label words and demonstrations into an ``ICLPrompt``."""
    if "{label}" not in template:
        raise InvalidRequestError(f"the template {template!r} has no {{label}} placeholder")
    query_template = template[: template.index("{label}")].rstrip(" ")
    words = list(labels)
    shown = []
    for fields, label in demonstrations:
        word = words[label] if isinstance(label, int) else label
        if word not in words:
            raise InvalidRequestError(f"demonstration label {label!r} is not one of {words}")
        values = {"text": fields} if isinstance(fields, str) else dict(fields)
        try:
            shown.append(template.replace("{label}", word).format(**values))
        except KeyError as exc:
            raise InvalidRequestError(f"a demonstration lacks the template field {exc}") from None
    prefix = (instruction + separator if instruction else "") + "".join(d + separator for d in shown)
    return ICLPrompt(
        query_template=query_template,
        labels=tuple(label_prefix + w for w in words),
        prefix=prefix,
        mode=mode,
        length_normalize=length_normalize,
        apply_chat_template=apply_chat_template,
    )
