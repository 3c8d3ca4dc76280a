"""HFBackend: every speed trick equals the plain computation, and the maths matches a hand computation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from biasaudit.backend import Backend
from biasaudit.backend.hf import HFBackend
from biasaudit.errors import InvalidRequestError, LabelCollisionError, LayerOutOfRangeError

DEMOS = "".join(
    f"Review: {text}\nSentiment: {label}\n\n"
    for text, label in [
        ("a warm, funny and moving film", "positive"),
        ("dull, slow and far too long", "negative"),
        ("the cast is wonderful", "positive"),
        ("i wanted my money back", "negative"),
    ]
)
QUERIES = ["loved every minute", "not good", "an absolute mess of a script, from start to end", "fine"]
PROMPTS = [f"{DEMOS}Review: {q}\nSentiment:" for q in QUERIES]
LABELS = [" positive", " negative"]
MIXED = [
    ("The capital of France is", " Paris"),
    ("Once upon a time, in a land far away, there lived a", " king who ruled wisely"),
    ("2 + 2 =", " 4"),
    ("", "Hello world"),
    ("She said", " that it was over."),
    ("The capital of France is", " Lyon"),
]


def plain(backend: HFBackend, **overrides) -> HFBackend:
    """The same model with every trick off: one request per forward, no prefix reuse."""
    kwargs = {"batch_size": 1, "prefix_reuse": False, "progress": False}
    kwargs.update(overrides)
    return HFBackend(backend.model, backend.tokenizer, **kwargs)


def hand_continuation_logprobs(backend: HFBackend, context: str, continuation: str) -> np.ndarray:
    """Log-probs of the continuation tokens from one full forward over the joined text."""
    tok = backend.tokenizer
    ctx = tok(context, add_special_tokens=False).input_ids
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    cont = whole[len(ctx) :]
    with torch.no_grad():
        logits = backend.model(torch.tensor([whole])).logits[0].log_softmax(-1)
    return np.array([logits[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)])


def test_hf_backend_satisfies_protocol(tiny_backend):
    assert isinstance(tiny_backend, Backend)


def test_batched_equals_unbatched(tiny_backend):
    batched = tiny_backend.loglikelihood(MIXED)
    single = plain(tiny_backend).loglikelihood(MIXED)
    np.testing.assert_allclose([r.logprob for r in batched], [r.logprob for r in single], atol=1e-4, rtol=0)
    assert [r.is_greedy for r in batched] == [r.is_greedy for r in single]
    assert [r.n_tokens for r in batched] == [r.n_tokens for r in single]


def test_loglikelihood_matches_hand_computation(tiny_backend):
    for (context, continuation), result in zip(MIXED[:3], tiny_backend.loglikelihood(MIXED[:3]), strict=True):
        expected = hand_continuation_logprobs(tiny_backend, context, continuation)
        assert result.n_tokens == len(expected)
        assert result.logprob == pytest.approx(expected.sum(), abs=1e-4)


def test_trailing_space_moves_to_continuation(tiny_backend):
    """lm-eval's split: 'is ' + 'Paris' scores the same tokens as 'is' + ' Paris'."""
    a, b = tiny_backend.loglikelihood([("The capital of France is ", "Paris"), ("The capital of France is", " Paris")])
    assert a == b


def test_empty_context_scores_every_continuation_token_after_one_bos(tiny_backend):
    hello = tiny_backend.tokenizer("Hello world", add_special_tokens=False).input_ids
    prefix = tiny_backend._prefix_token_id
    assert tiny_backend._encode_pairs([("", "Hello world")], False) == [([prefix], hello)]
    tiny_backend._adds_bos = True  # as for Llama-2 / Gemma tokenizers: BOS once, before the context only
    bos = tiny_backend.tokenizer.bos_token_id
    assert tiny_backend._encode_pairs([("", "Hello world")], False) == [([prefix], hello)]
    ((ctx, cont),) = tiny_backend._encode_pairs([("Hi", " there")], False)
    assert ctx[0] == bos and ctx.count(bos) == 1 and bos not in cont


def test_is_greedy_is_true_for_the_argmax_continuation(tiny_backend):
    tok = tiny_backend.tokenizer
    ids = tok("The capital of France is", add_special_tokens=False).input_ids
    with torch.no_grad():
        best = int(tiny_backend.model(torch.tensor([ids])).logits[0, -1].argmax())
    continuation = tok.decode([best])
    (result,) = tiny_backend.loglikelihood([("The capital of France is", continuation)])
    retok = tok("The capital of France is" + continuation, add_special_tokens=False).input_ids[len(ids) :]
    assert result.is_greedy == (retok == [best])


def count_tokens(backend: HFBackend) -> list[int]:
    """Record how many tokens each forward pass of ``backend`` runs (the list grows as it works)."""
    counts: list[int] = []
    original = backend._forward_states

    def counting(ids, mask, **kwargs):
        counts.append(int(ids.numel()))
        return original(ids, mask, **kwargs)

    backend._forward_states = counting  # type: ignore[method-assign]
    return counts


def test_prefix_reuse_equals_no_reuse_and_runs_fewer_tokens(tiny_backend):
    reused_counts = count_tokens(tiny_backend)
    reused = tiny_backend.label_log_probs(PROMPTS, LABELS, mode="full_sequence")
    no_reuse_backend = plain(tiny_backend, batch_size="auto")
    no_reuse_counts = count_tokens(no_reuse_backend)
    no_reuse = no_reuse_backend.label_log_probs(PROMPTS, LABELS, mode="full_sequence")
    np.testing.assert_allclose(reused, no_reuse, atol=1e-4, rtol=0)
    assert sum(reused_counts) < sum(no_reuse_counts) / 2


def test_first_token_scoring_runs_one_row_per_prompt(tiny_backend):
    rows, _ = tiny_backend._plan_rows(
        [it for p in PROMPTS for it in _first_token_items(tiny_backend, p, [" positive", " negative", " neutral"])]
    )
    assert len(rows) == len(PROMPTS)


def _first_token_items(backend, prompt, labels):
    from biasaudit.backend.hf import _ScoreItem

    pairs = backend._encode_pairs([(prompt, label) for label in labels], False)
    return [_ScoreItem((*ctx, cont[0]), 1) for ctx, cont in pairs]


def test_label_log_probs_first_token_matches_logits(tiny_backend):
    got = tiny_backend.label_log_probs(PROMPTS, LABELS)
    tok = tiny_backend.tokenizer
    for i, prompt in enumerate(PROMPTS):
        ids = tok(prompt, add_special_tokens=False).input_ids
        with torch.no_grad():
            last = tiny_backend.model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
        for j, label in enumerate(LABELS):
            first = tok(prompt + label, add_special_tokens=False).input_ids[len(ids)]
            assert got[i, j] == pytest.approx(last[first].item(), abs=1e-4)


def test_label_log_probs_full_sequence_and_length_normalisation(tiny_backend):
    labels = [" very positive indeed", " negative"]
    total = tiny_backend.label_log_probs(PROMPTS[:2], labels, mode="full_sequence")
    normalised = tiny_backend.label_log_probs(PROMPTS[:2], labels, mode="full_sequence", length_normalize=True)
    for i, prompt in enumerate(PROMPTS[:2]):
        for j, label in enumerate(labels):
            expected = hand_continuation_logprobs(tiny_backend, prompt, label)
            assert total[i, j] == pytest.approx(expected.sum(), abs=1e-4)
            assert normalised[i, j] == pytest.approx(expected.mean(), abs=1e-4)


def test_hidden_states_match_output_hidden_states(tiny_backend):
    texts = ["hello there", "a much longer sentence, used to test padding", "x"]
    layers = [0, 1, 2]
    got_last = tiny_backend.hidden_states(texts, layers, pooling="last")
    got_mean = tiny_backend.hidden_states(texts, layers, pooling="mean")
    model, tok = tiny_backend.model, tiny_backend.tokenizer
    for i, text in enumerate(texts):
        ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        for layer in (0, 1):  # HF's entries before the last are the raw residual stream
            np.testing.assert_allclose(got_last[layer][i], hs[layer][0, -1].numpy(), atol=1e-5)
            # Mean pooling leaves out position 0 (the attention sink), except in a one-token text.
            expected_mean = hs[layer][0, 1:].mean(0) if ids.shape[1] > 1 else hs[layer][0, 0]
            np.testing.assert_allclose(got_mean[layer][i], expected_mean.numpy(), atol=1e-5)
        # HF applies the final norm to its last entry; ours is the block output before that norm.
        normed = model.model.norm(torch.from_numpy(got_last[2][i])[None]).numpy()[0]
        np.testing.assert_allclose(normed, hs[2][0, -1].numpy(), atol=1e-4)


def test_hidden_states_stream_in_batches_and_accept_negative_layers(tiny_backend):
    backend = HFBackend(tiny_backend.model, tiny_backend.tokenizer, batch_size=2, progress=False)
    texts = [f"sentence number {i} " * (i % 4 + 1) for i in range(7)]
    batches = list(backend.iter_hidden_states(texts, [-1]))
    assert [len(b) for b, _ in batches] == [2, 2, 2, 1]
    assert sorted(np.concatenate([b for b, _ in batches]).tolist()) == list(range(7))
    whole = tiny_backend.hidden_states(texts, [2])[2]
    for batch, pooled in batches:
        np.testing.assert_allclose(pooled[2], whole[batch], atol=1e-4, rtol=1e-5)


def test_token_states_match_output_hidden_states_per_token(tiny_backend):
    backend = HFBackend(tiny_backend.model, tiny_backend.tokenizer, batch_size=2, progress=False)
    texts = ["hello there", "a much longer sentence, used to test padding", "x", "two words"]
    model, tok = backend.model, backend.tokenizer
    seen = []
    for states in backend.iter_token_states(texts, [0, 1], skip_positions=1):
        assert set(states.values) == {0, 1}
        assert len(states.text_index) == len(states.position) == len(states.values[1])
        for row, (i, pos) in enumerate(zip(states.text_index, states.position, strict=True)):
            ids = torch.tensor([tok(texts[i], add_special_tokens=False).input_ids])
            with torch.no_grad():
                hs = model(ids, output_hidden_states=True).hidden_states
            for layer in (0, 1):
                np.testing.assert_allclose(states.values[layer][row], hs[layer][0, pos].numpy(), atol=1e-5)
            seen.append((int(i), int(pos)))
    lengths = [len(tok(t, add_special_tokens=False).input_ids) for t in texts]
    # Every token but the first of each text, once; a one-token text contributes nothing.
    assert sorted(seen) == sorted((i, p) for i, n in enumerate(lengths) for p in range(1, n))
    with pytest.raises(InvalidRequestError):
        next(backend.iter_token_states(texts, [1], skip_positions=-1))


def test_fingerprint_tells_weights_apart(tiny_backend, tokenizer):
    from conftest import build_tiny_model

    other = HFBackend(build_tiny_model(len(tokenizer), seed=1), tokenizer, progress=False)
    same = HFBackend(tiny_backend.model, tokenizer, progress=False)
    assert same.fingerprint == tiny_backend.fingerprint
    assert other.fingerprint != tiny_backend.fingerprint
    assert isinstance(tiny_backend, Backend)


def test_generate_batched_equals_one_at_a_time(tiny_backend):
    prompts = [
        "The capital of France is",
        "Hi",
        "A long prompt that needs a lot of left padding for the others",
    ]
    batched = tiny_backend.generate(prompts, max_new_tokens=6)
    single = [plain(tiny_backend).generate([p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single


def test_generate_applies_logits_processors(tiny_backend):
    from transformers import LogitsProcessor

    forced = tiny_backend.tokenizer(" banana", add_special_tokens=False).input_ids[0]

    class Force(LogitsProcessor):
        def __call__(self, input_ids, scores):
            out = torch.full_like(scores, -float("inf"))
            out[:, forced] = 0.0
            return out

    out = tiny_backend.generate(["Hello", "The weather today"], max_new_tokens=3, logits_processors=[Force()])
    assert out == [" banana banana banana"] * 2


def _banana_twice_then_dot(backend):
    """A logits processor forcing " banana" twice, then "."; ``steps`` counts the decoding steps it saw."""
    from transformers import LogitsProcessor

    banana, dot = (backend.tokenizer(t, add_special_tokens=False).input_ids[0] for t in (" banana", "."))

    class Script(LogitsProcessor):
        steps = 0

        def __call__(self, input_ids, scores):
            self.steps += 1
            out = torch.full_like(scores, -float("inf"))
            out[:, banana if self.steps <= 2 else dot] = 0.0
            return out

    return Script()


def test_generate_stops_at_stop_strings_and_cuts_them(tiny_backend):
    script = _banana_twice_then_dot(tiny_backend)
    out = tiny_backend.generate(["Hello", "The weather"], max_new_tokens=20, logits_processors=[script], stop=["."])
    assert out == [" banana banana"] * 2
    assert script.steps == 3  # the batch ended when both rows had produced the stop string


def test_sampling_is_reproducible_with_a_seed(tiny_backend):
    kwargs = {"max_new_tokens": 8, "do_sample": True, "temperature": 1.0, "seed": 3}
    assert tiny_backend.generate(["Once upon"], **kwargs) == tiny_backend.generate(["Once upon"], **kwargs)


# ----------------------------------------------------------------- generation: shared header, k copies
QA_HEADER = (
    "Answer each question with a short phrase.\n\n"
    "Q: Which metal has the chemical symbol Sn?\nA: Tin\n\n"
    "Q: Who composed the opera The Magic Flute?\nA: Wolfgang Amadeus Mozart\n\n"
)
QA_PROMPTS = [
    f"{QA_HEADER}Q: {q}\nA:"
    for q in ["Who wrote Hamlet?", "What is the capital of a small country far to the south of here?", "Why?"]
]


def transformers_greedy(backend: HFBackend, prompt: str, max_new_tokens: int, stop: list[str] | None = None) -> str:
    """The reference: transformers' own greedy ``generate`` on the prompt alone (no padding, no cache
    tricks, no segments), cut at the first stop string."""
    from biasaudit.backend.hf_generation import cut_at_stops

    ids = torch.tensor([backend.tokenizer(prompt, add_special_tokens=False).input_ids])
    kwargs = {"stop_strings": stop, "tokenizer": backend.tokenizer} if stop else {}
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
            top_k=None, temperature=None, top_p=None, pad_token_id=backend._pad_id(), **kwargs,
        )  # fmt: skip
    return cut_at_stops(backend.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True), stop or [])


@contextmanager
def counting_body_tokens(backend: HFBackend) -> Iterator[list[int]]:
    """Record how many tokens (padding included) each forward of the decoder body runs, generation's
    steps included; the hook sits on the (shared) model, so it comes off on exit."""
    counts: list[int] = []

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        counts.append(int(ids.numel()))

    handle = backend._body.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()


def test_generate_shares_the_header_and_equals_transformers_generate(tiny_model, tokenizer):
    backend = HFBackend(tiny_model, tokenizer, progress=False, min_prefix_tokens=4, min_reuse_saving=0)
    prompts = [*QA_PROMPTS, "Hi"]  # "Hi" shares nothing: it runs on its own
    got = backend.generate(prompts, max_new_tokens=8)
    assert got == [transformers_greedy(backend, p, 8) for p in prompts]
    (header,) = backend._prefix_cache  # the header was encoded once, as a prefix
    assert tokenizer.decode(list(header)).startswith(QA_HEADER.rstrip())
    # A second call (the sampled answers after the greedy ones) reuses the cached header.
    assert backend.generate(prompts, max_new_tokens=8, stop=["\n"]) == [t.split("\n")[0] for t in got]
    assert len(backend._prefix_cache) == 1


@pytest.mark.parametrize("share_header", [True, False])
def test_num_return_sequences_greedy_gives_each_prompts_answer_k_times_in_order(tiny_model, tokenizer, share_header):
    saving = 0 if share_header else 10**9
    backend = HFBackend(tiny_model, tokenizer, progress=False, min_prefix_tokens=4, min_reuse_saving=saving)
    prompts = [*QA_PROMPTS, "Hi", "The weather today is"]
    single = [transformers_greedy(backend, p, 6) for p in prompts]
    assert len(set(single)) == len(prompts)  # distinct answers, so a mix-up would show
    got = backend.generate(prompts, max_new_tokens=6, num_return_sequences=3)
    assert got == [s for s in single for _ in range(3)]
    assert plain(backend).generate(prompts, max_new_tokens=6, num_return_sequences=3) == got


def first_step_scores(backend: HFBackend, prompts: list[str], k: int) -> dict[tuple[int, ...], list[torch.Tensor]]:
    """{prompt tokens: first-step scores of each of its k rows}, captured by a LogitsProcessor."""
    from transformers import LogitsProcessor

    pad = backend._pad_id()
    seen: dict[tuple[int, ...], list[torch.Tensor]] = {}

    class Capture(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for row, row_scores in zip(input_ids, scores, strict=True):
                seen.setdefault(tuple(t for t in row.tolist() if t != pad), []).append(row_scores.clone())
            return scores

    # One new token: the processor sees only the first step, whose input is the prompt itself.
    backend.generate(prompts, max_new_tokens=1, num_return_sequences=k, logits_processors=[Capture()])
    return seen


@pytest.mark.parametrize("share_header", [True, False])
def test_expanded_prompt_cache_gives_the_logits_of_recomputed_prompts(tiny_model, tokenizer, share_header):
    saving = 0 if share_header else 10**9
    backend = HFBackend(tiny_model, tokenizer, progress=False, min_prefix_tokens=4, min_reuse_saving=saving)
    prompts = [*QA_PROMPTS, "Hi", "The weather today is"]
    with counting_body_tokens(backend) as shared_counts:
        shared = first_step_scores(backend, prompts, k=4)
    with counting_body_tokens(backend) as recompute_counts:
        recomputed = first_step_scores(plain(backend, batch_size="auto"), prompts, k=4)
    assert set(shared) == set(recomputed) == {tuple(backend._encode_many([p])[0]) for p in prompts}
    for key, rows in recomputed.items():
        assert len(rows) == len(shared[key]) == 4
        for a, b in zip(shared[key], rows, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    # Each prompt ran once (plus its last token per copy), not four times.
    assert sum(shared_counts) < sum(recompute_counts) / 2


def test_sampled_copies_are_reproducible_with_a_seed_and_differ_from_each_other(tiny_backend):
    kwargs = {"max_new_tokens": 8, "do_sample": True, "temperature": 1.0, "num_return_sequences": 4}
    first = tiny_backend.generate(QA_PROMPTS, seed=3, **kwargs)
    assert len(first) == len(QA_PROMPTS) * 4
    assert tiny_backend.generate(QA_PROMPTS, seed=3, **kwargs) == first
    assert tiny_backend.generate(QA_PROMPTS, seed=4, **kwargs) != first
    assert all(len(set(first[i * 4 : (i + 1) * 4])) > 1 for i in range(len(QA_PROMPTS)))  # copies sample apart


def test_finished_rows_leave_the_batch_without_changing_any_answer(tiny_model, tokenizer):
    backend = HFBackend(tiny_model, tokenizer, progress=False, prefix_reuse=False)
    prompts = [*QA_PROMPTS, "Hi", "The weather today is", "Once upon a time"]
    full = [transformers_greedy(backend, p, 12) for p in prompts]
    # Each row's stop string is one of its own tokens, at a different place in each row.
    tokens = [tokenizer(text, add_special_tokens=False).input_ids for text in full]
    stops = [tokenizer.decode([ids[r + 1]]) for r, ids in enumerate(tokens)]
    expected = [transformers_greedy(backend, p, 12, stops) for p in prompts]
    lengths = [len(tokenizer(text, add_special_tokens=False).input_ids) for text in expected]
    assert min(lengths) < 2 < max(lengths)  # some rows finish in the first segment, some run on
    rows_per_step: list[int] = []
    hook = backend._body.register_forward_pre_hook(
        lambda _m, _a, kwargs: rows_per_step.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        got = backend.generate(prompts, max_new_tokens=12, stop=stops)
    finally:
        hook.remove()
    assert got == expected
    assert rows_per_step[0] == len(prompts) and rows_per_step[-1] < len(prompts)  # the batch shrank


def test_num_return_sequences_stops_at_stop_strings(tiny_backend):
    script = _banana_twice_then_dot(tiny_backend)
    out = tiny_backend.generate(
        QA_PROMPTS[:2], max_new_tokens=20, logits_processors=[script], stop=["."], num_return_sequences=3
    )
    assert out == [" banana banana"] * 6
    assert script.steps == 3  # one batch, ended when all six rows had produced the stop string


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda b: b.loglikelihood([]), InvalidRequestError),
        (lambda b: b.loglikelihood([("context", "")]), InvalidRequestError),
        (lambda b: b.loglikelihood([("context",)]), InvalidRequestError),
        (lambda b: b.label_log_probs([], LABELS), InvalidRequestError),
        (lambda b: b.label_log_probs(PROMPTS, []), InvalidRequestError),
        (lambda b: b.label_log_probs(PROMPTS, [" positive", ""]), InvalidRequestError),
        (lambda b: b.label_log_probs(PROMPTS, [" positive", "  "]), InvalidRequestError),
        (lambda b: b.label_log_probs(PROMPTS, [" yes", " yes"]), InvalidRequestError),
        (lambda b: b.label_log_probs(PROMPTS, LABELS, mode="middle"), InvalidRequestError),
        (lambda b: b.hidden_states(["text"], [3]), LayerOutOfRangeError),
        (lambda b: b.hidden_states(["text"], [-4]), LayerOutOfRangeError),
        (lambda b: b.hidden_states(["text"], []), InvalidRequestError),
        (lambda b: b.hidden_states([], [1]), InvalidRequestError),
        (lambda b: b.hidden_states(["text"], [1], pooling="max"), InvalidRequestError),
        (lambda b: b.generate([], max_new_tokens=2), InvalidRequestError),
        (lambda b: b.generate(["x"], max_new_tokens=0), InvalidRequestError),
        (lambda b: b.generate(["x"], num_return_sequences=0), InvalidRequestError),
        (lambda b: b.generate(["x"], num_return_sequences=-2), InvalidRequestError),
        (lambda b: b.generate(["x"], num_return_sequences=2.0), InvalidRequestError),
        (lambda b: b.generate(["x"], num_return_sequences=True), InvalidRequestError),
    ],
)
def test_bad_requests_raise_typed_errors(tiny_backend, call, error):
    with pytest.raises(error):
        call(tiny_backend)


def test_labels_sharing_a_first_token_are_refused_in_first_token_mode(tiny_backend):
    labels = [" Yes", " Yes!"]
    with pytest.raises(LabelCollisionError, match="full_sequence"):
        tiny_backend.label_log_probs(["Is it?"], labels)
    scores = tiny_backend.label_log_probs(["Is it?"], labels, mode="full_sequence")
    assert scores.shape == (1, 2) and scores[0, 0] > scores[0, 1]  # the longer label adds a token


# ----------------------------------------------------------------- the real default model
@pytest.mark.slow
def test_default_model_batched_equals_unbatched(default_backend):
    batched = default_backend.label_log_probs(PROMPTS, LABELS)
    single = plain(default_backend).label_log_probs(PROMPTS, LABELS)
    np.testing.assert_allclose(batched, single, atol=1e-4, rtol=0)
    full = default_backend.label_log_probs(PROMPTS, LABELS, mode="full_sequence")
    np.testing.assert_allclose(full, batched, atol=1e-4)  # both labels are single tokens


@pytest.mark.slow
def test_default_model_knows_facts_and_follows_chat_template(default_backend):
    paris, lyon = default_backend.loglikelihood(
        [("The capital of France is", " Paris"), ("The capital of France is", " Lyon")]
    )
    assert paris.is_greedy and paris.logprob > lyon.logprob
    (answer,) = default_backend.generate(
        ["What is the capital of France?"], max_new_tokens=16, apply_chat_template=True
    )
    assert "Paris" in answer
    assert default_backend.format_chat("hi").endswith("<|im_start|>assistant\n")
    # The template's final newline stays in the context: the answer's first token is the label itself.
    ((_ctx, cont),) = default_backend._encode_pairs([("Is the sky blue?", "Yes")], apply_chat_template=True)
    assert default_backend.tokenizer.decode(cont) == "Yes"
    got = default_backend.label_log_probs(["Is the sky blue?"], ["Yes", "No"], apply_chat_template=True)
    tok = default_backend.tokenizer
    ids = tok(default_backend.format_chat("Is the sky blue?"), add_special_tokens=False).input_ids
    with torch.no_grad():
        last = default_backend.model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
    expected = [
        last[tok("Yes", add_special_tokens=False).input_ids[0]],
        last[tok("No", add_special_tokens=False).input_ids[0]],
    ]
    np.testing.assert_allclose(got[0], [e.item() for e in expected], atol=1e-4)


@pytest.mark.slow
def test_default_model_hidden_states_match_transformers(default_backend):
    texts = ["The nurse said", "He is an engineer who builds bridges"]
    got = default_backend.hidden_states(texts, [4, 15])
    tok, model = default_backend.tokenizer, default_backend.model
    for i, text in enumerate(texts):
        with torch.no_grad():
            hs = model(torch.tensor([tok(text).input_ids]), output_hidden_states=True).hidden_states
        for layer in (4, 15):
            np.testing.assert_allclose(got[layer][i], hs[layer][0, -1].numpy(), atol=1e-4)


def test_encoded_prefixes_are_reused_across_calls_without_changing_results(tiny_model, tokenizer):
    backend = HFBackend(
        tiny_model, tokenizer, progress=False, min_prefix_tokens=4, min_reuse_saving=0, prefix_cache_size=1
    )
    tokens = count_tokens(backend)
    # The first call shares more than the demonstrations ("Review: the same start"); later calls share
    # less, so they use the cached encoding cut back to what they have in common with it.
    backend.label_log_probs([f"{DEMOS}Review: the same start, then {q}\nSentiment:" for q in QUERIES], LABELS)
    tokens.clear()
    first = backend.label_log_probs(PROMPTS, LABELS, mode="full_sequence")
    cold = sum(tokens) + len(backend.tokenizer(DEMOS).input_ids)  # what the first call would have cost
    tokens.clear()
    content_free = [f"{DEMOS}Review: {x}\nSentiment:" for x in ("N/A", "", "[MASK]")]
    warm_scores = backend.label_log_probs(content_free, LABELS)  # same demonstrations, another call
    warm = sum(tokens)
    assert warm <= 3 * 10  # only the short query tokens ran; the demonstrations came from the cache
    assert len(backend._prefix_cache) == 1
    fresh = HFBackend(tiny_model, tokenizer, progress=False, prefix_reuse=False)
    np.testing.assert_allclose(warm_scores, fresh.label_log_probs(content_free, LABELS), atol=1e-4)
    np.testing.assert_allclose(first, fresh.label_log_probs(PROMPTS, LABELS, mode="full_sequence"), atol=1e-4)
    assert cold > warm
    other = [f"Another demo block entirely.\n\nReview: {q}\nSentiment:" for q in QUERIES]
    np.testing.assert_allclose(backend.label_log_probs(other, LABELS), fresh.label_log_probs(other, LABELS), atol=1e-4)
    assert len(backend._prefix_cache) == 1  # the older prompt was evicted


def test_a_kept_encoding_serves_a_few_rows_that_would_not_pay_for_a_fresh_one(tiny_model, tokenizer):
    # A calibrator scores 3 content-free inputs after the test set: 3 rows save too little for a prefix
    # forward of their own, but the test call left the demonstrations' encoding in the cache.
    backend = HFBackend(tiny_model, tokenizer, progress=False, min_prefix_tokens=4, min_reuse_saving=0)
    backend.label_log_probs(PROMPTS, LABELS)
    backend.min_reuse_saving = 10**9  # no group is worth a fresh prefix forward from here on
    tokens = count_tokens(backend)
    content_free = [f"{DEMOS}Review: {x}\nSentiment:" for x in ("N/A", "", "[MASK]")]
    warm = backend.label_log_probs(content_free, LABELS)
    assert sum(tokens) <= 3 * 10  # only the query tokens ran
    fresh = HFBackend(tiny_model, tokenizer, progress=False, prefix_reuse=False)
    np.testing.assert_allclose(warm, fresh.label_log_probs(content_free, LABELS), atol=1e-4)
    backend._prefix_cache.clear()  # without the kept encoding the same call runs every token
    tokens.clear()
    backend.label_log_probs(content_free, LABELS)
    assert sum(tokens) > 3 * len(tokenizer(DEMOS).input_ids)


def test_a_kept_encoding_of_the_prompts_start_is_extended_once_not_per_row(tiny_model, tokenizer):
    # A 1-shot prompt's encoding is kept; the 4-shot prompt with the same first demonstration must run
    # its other 3 demonstrations once, on top of it, not once per query (the rows' own tokens only).
    backend = HFBackend(tiny_model, tokenizer, progress=False, min_prefix_tokens=4, min_reuse_saving=0)
    first_demo = DEMOS.split("\n\n")[0] + "\n\n"
    backend.label_log_probs([f"{first_demo}Review: {q}\nSentiment:" for q in QUERIES], LABELS)
    (kept,) = backend._prefix_cache
    tokens = count_tokens(backend)
    got = backend.label_log_probs(PROMPTS, LABELS)
    demos = len(tokenizer(DEMOS).input_ids)
    longest_suffix = max(len(tokenizer(p).input_ids) for p in PROMPTS) - demos
    extension, rows = tokens  # one forward for the rest of the prefix, one for the rows' own tokens
    assert extension <= demos - len(kept) + 4  # the 3 other demonstrations (+ "Review:")
    assert rows <= len(PROMPTS) * (longest_suffix + 1)  # per row: its query only, padded
    (longer,) = backend._prefix_cache  # the extended encoding replaced the one it extends
    assert longer[: len(kept)] == kept and len(longer) > len(kept)
    fresh = HFBackend(tiny_model, tokenizer, progress=False, prefix_reuse=False)
    np.testing.assert_allclose(got, fresh.label_log_probs(PROMPTS, LABELS), atol=1e-4)


def _bos_chat_tokenizer():
    """A word-level tokenizer that adds BOS and whose chat template writes the BOS string itself (as
    Llama 3's, Gemma's and Mistral's do), built here: no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "[user]", "[assistant]", "hello", "world", "yes", "no", "is", "it", "?"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tok.chat_template = (
        "<s>{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    return tok


def test_a_chat_template_that_writes_bos_gets_no_second_bos():
    from conftest import build_tiny_model

    from biasaudit.backend.hf import HFBackend

    tok = _bos_chat_tokenizer()
    backend = HFBackend(build_tiny_model(len(tok)), tok, progress=False)
    bos = tok.bos_token_id
    assert backend._adds_bos and tok("hello").input_ids == [bos, 6]
    assert backend._encode_many(["hello world", "<s> hello world"]) == [[bos, 6, 7], [bos, 6, 7]]
    chat = backend.format_chat("is it ?")
    assert chat.startswith("<s>")
    ((ctx, cont),) = backend._encode_pairs([("is it ?", "yes")], apply_chat_template=True)
    assert ctx.count(bos) == 1 and ctx[0] == bos and cont == [8]
    assert ctx == tok(chat, add_special_tokens=False).input_ids  # what the template wrote, nothing more
    direct = backend.model(torch.tensor([[*ctx, 8]])).logits.log_softmax(-1)[0, -2, 8].item()
    got = backend.label_log_probs(["is it ?"], ["yes", "no"], apply_chat_template=True)
    assert got[0, 0] == pytest.approx(direct, abs=1e-5)
    generated = backend.generate(["is it ?"], max_new_tokens=1, apply_chat_template=True)
    assert isinstance(generated[0], str)


def test_first_token_mode_warns_which_labels_it_truncates(tiny_backend):
    from biasaudit.calibration.prompt import ICLPrompt
    from biasaudit.errors import LabelTruncationWarning

    with pytest.warns(LabelTruncationWarning, match=r"\[' banana split'\]"):
        tiny_backend.label_log_probs(["Pick one:"], [" banana split", " cherry"])
    prompt = ICLPrompt("Pick one: {text}\nAnswer:", (" banana split", " cherry"))
    assert prompt.truncated_labels(tiny_backend) == [" banana split"]
    whole = ICLPrompt("Pick one: {text}\nAnswer:", (" banana split", " cherry"), mode="full_sequence")
    assert whole.truncated_labels(tiny_backend) == []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelTruncationWarning)
        tiny_backend.label_log_probs(["Pick one:"], [" banana", " cherry"])  # single-token labels: silent
