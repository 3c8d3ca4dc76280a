"""A backend whose log-likelihoods the test writes, so every metric has an exact expected value.

A helper module rather than a ``conftest.py``: test modules here also import ``shared_data_or_skip``
from the root ``conftest``, and a second ``conftest`` module would shadow it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from biasaudit.backend.protocol import LoglikelihoodResult

Score = float | tuple[float, int]


class FakeBackend:
    """``loglikelihood`` answers ``fn(context, continuation)``: a log-prob, or (log-prob, n_tokens).

    Without an explicit token count a continuation has one token per whitespace-separated word.
    Every call is recorded, so tests can check that a benchmark asks once, for everything.
    """

    name, n_layers, hidden_size, fingerprint = "fake", 1, 1, "fake"

    def __init__(self, fn: Callable[[str, str], Score]) -> None:
        self.fn = fn
        self.calls: list[dict] = []

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], *, apply_chat_template: bool = False
    ) -> list[LoglikelihoodResult]:
        self.calls.append({"requests": list(requests), "chat": apply_chat_template})
        out = []
        for context, continuation in requests:
            value = self.fn(context, continuation)
            logprob, n_tokens = value if isinstance(value, tuple) else (value, len(continuation.split()))
            out.append(LoglikelihoodResult(float(logprob), False, int(n_tokens)))
        return out
