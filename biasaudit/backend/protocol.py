"""The one protocol every method talks to.

Methods ask a backend for numbers -- log-likelihoods, label log-probs, generations, hidden states --
and never touch a concrete model class. Batching, caching and padding live once, behind this waist
(the shape of lm-evaluation-harness's ``LM`` API), not in each method.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

LabelMode = Literal["first_token", "full_sequence"]
Pooling = Literal["last", "mean"]


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Log-likelihood of one continuation given its context.

    ``logprob`` is the summed log-probability of the continuation's tokens; ``is_greedy`` says whether
    greedy decoding from the context would produce exactly those tokens; ``n_tokens`` is how many
    tokens the continuation has (for length normalisation).
    """

    logprob: float
    is_greedy: bool
    n_tokens: int


@dataclass(frozen=True)
class TokenStates:
    """Per-token residual stream of one batch of texts (what SAE training and latent search read).

    ``values[layer]`` is (n_tokens, d); row i belongs to ``texts[text_index[i]]`` at token ``position[i]``.
    Padding never appears; the first ``skip_positions`` tokens of every text are left out.
    """

    text_index: np.ndarray
    position: np.ndarray
    values: dict[int, np.ndarray]


@runtime_checkable
class Backend(Protocol):
    """What a method may ask of a model. ``HFBackend`` is the reference implementation."""

    name: str
    n_layers: int
    hidden_size: int

    @property
    def fingerprint(self) -> str:
        """Identifies the weights, not just the name: caches of activations are keyed by it."""
        ...

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], *, apply_chat_template: bool = False
    ) -> list[LoglikelihoodResult]:
        """Score each (context, continuation) pair."""
        ...

    def label_log_probs(
        self,
        prompts: Sequence[str],
        labels: Sequence[str],
        *,
        mode: LabelMode = "first_token",
        length_normalize: bool = False,
        apply_chat_template: bool = False,
    ) -> np.ndarray:
        """Log-probability of each label after each prompt: array (n_prompts, n_labels).

        ``first_token``: log p(first token of the label | prompt), one forward pass per prompt.
        ``full_sequence``: summed log-prob of all the label's tokens (divided by their number when
        ``length_normalize``). Values are raw (not renormalised over the labels).
        """
        ...

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        logits_processors: Sequence[Any] | None = None,
        apply_chat_template: bool = False,
        stop: Sequence[str] | None = None,
        num_return_sequences: int = 1,
    ) -> list[str]:
        """Continue each prompt; returns only the newly generated text.

        ``stop``: strings that end a row's generation; the text is cut before the first one. A batch
        ends when every row has stopped, so short answers do not pay for ``max_new_tokens``.
        ``num_return_sequences``: continuations per prompt (k samples of one question): the result has
        ``len(prompts) * k`` texts, prompt i's at ``[i * k : (i + 1) * k]``: like passing each prompt k
        times in a row (the same distribution; a seed may give other samples), but a backend may encode
        the prompt once for all its copies."""
        ...

    def hidden_states(
        self, texts: Sequence[str], layers: Sequence[int], *, pooling: Pooling = "last"
    ) -> dict[int, np.ndarray]:
        """Residual stream after each requested layer, pooled per text: {layer: array (n_texts, d)}.

        Layer 0 is the embedding output; layer l >= 1 is the output of decoder block l (before any
        final norm).
        """
        ...

    def iter_hidden_states(
        self, texts: Sequence[str], layers: Sequence[int], *, pooling: Pooling = "last"
    ) -> Iterator[tuple[np.ndarray, dict[int, np.ndarray]]]:
        """Like ``hidden_states`` but streamed: yields (indices into ``texts``, {layer: (b, d)}) per batch."""
        ...

    def iter_token_states(
        self, texts: Sequence[str], layers: Sequence[int], *, skip_positions: int = 1
    ) -> Iterator[TokenStates]:
        """Every token's residual stream after the requested layers, streamed per batch (no pooling).

        ``skip_positions`` drops each text's first tokens (position 0 carries an attention-sink
        activation with a huge norm that would dominate any reconstruction loss).
        """
        ...

    def format_chat(self, prompt: str) -> str:
        """``prompt`` as a user turn in the model's chat template, ready for the assistant's answer."""
        ...


@runtime_checkable
class VisionBackend(Protocol):
    """What an LVLM method may ask of an image+text model. ``VLMBackend`` is the reference implementation.

    Images are PIL images or paths, one per question. An input kind is ``"image"`` (the real image) or a
    reference mode that takes the image's information away (``none``, ``blank``, ``noise``, ``unk``).
    """

    name: str

    @property
    def fingerprint(self) -> str: ...

    def label_log_probs_by_input(
        self,
        questions: Sequence[str],
        labels: Sequence[str],
        images: Sequence[Any] | None,
        inputs: Sequence[str] = ("image", "none"),
        *,
        mode: LabelMode = "first_token",
        length_normalize: bool = False,
    ) -> dict[str, np.ndarray]:
        """Raw label log-probs of every question under each input kind: {kind: (n_questions, n_labels)}."""
        ...

    def generate(
        self,
        questions: Sequence[str],
        *,
        images: Sequence[Any] | None = None,
        reference: str | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        logits_processors: Sequence[Any] | None = None,
        stop: Sequence[str] | None = None,
        debias: Any | None = None,
    ) -> list[str]:
        """Answer each question with its image (or the ``reference`` input); ``debias`` is a
        ``DebiasSamplingProcessor`` bound per batch to the same rows under its reference mode."""
        ...
