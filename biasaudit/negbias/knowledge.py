"""What does the model know? Ask each question open-ended, greedily and k times sampled.

docs/methods.md §4 (thresholds ours; Song et al. 2025 split their sets the same three ways):

* **correct** -- the greedy answer matches gold and at least ``min_agree`` of the k samples do too;
* **incorrect** -- the greedy answer is wrong and at least ``min_agree`` samples give that same wrong
  answer (the model holds a wrong belief, consistently);
* **insufficient** -- everything else: samples disagree, the answer is empty, or generation failed.

"Matches" and "wrong" are ``matching.match_verdict``'s "match" and "mismatch"; a greedy answer that only
partly matches gold ("Obama" for "Barack Obama", "John Quincy Adams" for "John Adams") is neither
knowledge nor a clear wrong belief, and its question is *insufficient*.

Generation runs in chunks, one batched call for the greedy answers and one for all k samples of the
chunk (``num_return_sequences=k``, so a backend can encode each prompt once for its k samples). Greedy
and sampled answers are read the same way: generation stops at the end of the line, with the same
token limit. A chunk whose call raises is retried once; if it fails again its questions are counted as
``insufficient`` with the error as the reason -- never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from biasaudit.backend.protocol import Backend
from biasaudit.errors import InvalidRequestError
from biasaudit.negbias.items import KnowledgeProbe, QAItem, YesNoQuestion
from biasaudit.negbias.matching import Verdict, match_verdict, normalize_answer, same_answer
from biasaudit.progress import progress_bar

# Few-shot prompts (written by us) keep a small model's answers short and on one line. Their
# demonstration questions are deliberately unlike the shipped fact set's.
QA_PROMPT = (
    "Answer each question with a short phrase.\n\n"
    "Q: Which metal has the chemical symbol Sn?\nA: Tin\n\n"
    "Q: Who composed the opera The Magic Flute?\nA: Wolfgang Amadeus Mozart\n\n"
    "Q: {question}\nA:"
)
YESNO_PROMPT = (
    "Answer each question with yes or no.\n\n"
    "Q: Is a tomato botanically a fruit?\nA: yes\n\n"
    "Q: Can penguins fly?\nA: no\n\n"
    "Q: {question}\nA:"
)
# An answer is one line: generation stops there (and ``first_line`` cleans up what came before).
ANSWER_STOP = ["\n"]
# A yes/no answer is one word: a few tokens are enough, whatever the QA answer length.
YESNO_MAX_NEW_TOKENS = 4


def first_line(text: str) -> str:
    """The answer part of a generation: its first non-empty line, without a trailing "Q:" turn."""
    for line in text.strip().splitlines():
        line = re.split(r"\s+Q:", line.strip())[0].strip()
        if line:
            return line
    return ""


def yes_no_word(text: str) -> str:
    """ "yes" / "no" when the answer starts with it (or true/false), else the normalised answer."""
    words = normalize_answer(text).split()
    if words and words[0] in ("yes", "true"):
        return "yes"
    if words and words[0] in ("no", "false"):
        return "no"
    return " ".join(words)


def yes_no_verdict(answer: str, golds: Sequence[str]) -> Verdict:
    """A yes/no answer against its gold word: "match" or "mismatch" (there is no partial yes)."""
    return "match" if yes_no_word(answer) in {yes_no_word(g) for g in golds} else "mismatch"


def same_yes_no(first: str, second: str) -> bool:
    return yes_no_word(first) == yes_no_word(second)


def assign_subset(
    greedy: str,
    samples: Sequence[str],
    golds: Sequence[str],
    *,
    min_agree: int,
    verdict: Callable[[str, Sequence[str]], Verdict] = match_verdict,
    same: Callable[[str, str], bool] = same_answer,
) -> KnowledgeProbe:
    """The docs/methods.md §4 rule for one question (see the module docstring).

    verdict: how an answer relates to the gold answers ("match", "partial", "mismatch").
    same: whether two answers of the model are the same answer (samples agreeing with a wrong greedy one).
    """
    samples = list(samples)
    if not greedy.strip():
        return KnowledgeProbe(greedy, samples, False, 0, "insufficient", "empty greedy answer", "mismatch")
    greedy_verdict = verdict(greedy, golds)
    if greedy_verdict == "match":
        n_agree = sum(verdict(s, golds) == "match" for s in samples)
        if n_agree >= min_agree:
            return KnowledgeProbe(greedy, samples, True, n_agree, "correct", None, "match")
        reason = f"greedy correct, {n_agree}/{len(samples)} samples correct"
        return KnowledgeProbe(greedy, samples, True, n_agree, "insufficient", reason, "match")
    n_agree = sum(verdict(s, golds) == "mismatch" and same(s, greedy) for s in samples)
    if greedy_verdict == "partial":
        reason = "greedy answer partly matches gold (shares words with it, but is not it)"
        return KnowledgeProbe(greedy, samples, False, n_agree, "insufficient", reason, "partial")
    if n_agree >= min_agree:
        return KnowledgeProbe(greedy, samples, False, n_agree, "incorrect", None, "mismatch")
    reason = f"greedy wrong, {n_agree}/{len(samples)} samples agree with it"
    return KnowledgeProbe(greedy, samples, False, n_agree, "insufficient", reason, "mismatch")


class KnowledgeProber:
    """Probe a model's knowledge of questions (scikit-learn style: settings here, data in ``probe_*``).

    Parameters
    ----------
    k, temperature:
        Sampled answers per question and their temperature (docs/methods.md: 5 at 0.7).
    min_agree:
        Samples that must agree for ``correct`` / ``incorrect`` (docs/methods.md: 4 of 5).
    max_new_tokens, chunk_size, seed:
        Answer length, questions per generation call, and the sampling seed (chunk i samples with
        seed + i, so a rerun gives the same answers).
    """

    def __init__(
        self,
        *,
        k: int = 5,
        temperature: float = 0.7,
        min_agree: int = 4,
        max_new_tokens: int = 24,
        chunk_size: int = 64,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if not 0 < min_agree <= k:
            raise InvalidRequestError(f"min_agree must be in 1..k (k={k}), got {min_agree}")
        self.k = k
        self.temperature = temperature
        self.min_agree = min_agree
        self.max_new_tokens = max_new_tokens
        self.chunk_size = chunk_size
        self.seed = seed
        self.progress = progress

    def probe_qa(self, backend: Backend, items: Sequence[QAItem]) -> list[KnowledgeProbe]:
        """One probe per short-answer question."""
        prompts = [QA_PROMPT.format(question=item.question) for item in items]
        golds = [list(item.answers) for item in items]
        return self._probe(
            backend, prompts, golds, match_verdict, same_answer, self.max_new_tokens, "Probing knowledge"
        )

    def probe_yesno(self, backend: Backend, items: Sequence[YesNoQuestion]) -> list[KnowledgeProbe]:
        """One probe per native yes/no question: asked directly, answers read as yes/no."""
        prompts = [YESNO_PROMPT.format(question=item.question) for item in items]
        golds = [["yes" if item.answer else "no"] for item in items]
        max_new_tokens = min(self.max_new_tokens, YESNO_MAX_NEW_TOKENS)
        return self._probe(
            backend, prompts, golds, yes_no_verdict, same_yes_no, max_new_tokens, "Probing yes/no knowledge"
        )

    def _probe(
        self,
        backend: Backend,
        prompts: list[str],
        golds: list[list[str]],
        verdict: Callable[[str, Sequence[str]], Verdict],
        same: Callable[[str, str], bool],
        max_new_tokens: int,
        description: str,
    ) -> list[KnowledgeProbe]:
        out: list[KnowledgeProbe] = []
        with progress_bar(description, len(prompts), enabled=self.progress) as advance:
            for chunk_index, start in enumerate(range(0, len(prompts), self.chunk_size)):
                chunk = prompts[start : start + self.chunk_size]
                answers, error = self._generate_chunk(backend, chunk, self.seed + chunk_index, max_new_tokens)
                for i in range(len(chunk)):
                    if answers is None:
                        out.append(
                            KnowledgeProbe("", [], False, 0, "insufficient", f"generation failed twice: {error}")
                        )
                        continue
                    greedy, samples = answers[i]
                    out.append(
                        assign_subset(greedy, samples, golds[start + i], min_agree=self.min_agree,
                                      verdict=verdict, same=same)
                    )  # fmt: skip
                advance(len(chunk))
        return out

    def _generate_chunk(
        self, backend: Backend, prompts: list[str], seed: int, max_new_tokens: int
    ) -> tuple[list[tuple[str, list[str]]] | None, str | None]:
        """[(greedy answer, k sampled answers)] for a chunk, or (None, error) after two failed tries."""
        error = None
        for _attempt in range(2):
            try:
                greedy = backend.generate(prompts, max_new_tokens=max_new_tokens, stop=ANSWER_STOP)
                # k continuations per prompt, grouped per prompt: the backend may encode each prompt once.
                sampled = backend.generate(
                    prompts,
                    max_new_tokens=max_new_tokens,
                    do_sample=True,
                    temperature=self.temperature,
                    seed=seed,
                    stop=ANSWER_STOP,
                    num_return_sequences=self.k,
                )
            except Exception as exc:  # a backend error of any kind: retried once, then recorded
                error = f"{type(exc).__name__}: {exc}"
                continue
            return [
                (first_line(greedy[i]), [first_line(s) for s in sampled[i * self.k : (i + 1) * self.k]])
                for i in range(len(prompts))
            ], None
        return None, error
