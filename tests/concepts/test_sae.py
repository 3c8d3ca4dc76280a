"""Loading SAEs against a backend, encoding, and concepts in SAE space (known answers on synthetic SAEs)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from biasaudit.backend.protocol import TokenStates
from biasaudit.concepts.sae import (
    SAEConceptAnalysis,
    SAEMismatchError,
    SAENotFoundError,
    encode,
    hook_to_layer,
    layer_to_hook,
    load_sae,
)


class StubBackend:
    """What ``load_sae`` reads of a backend, plus token states scripted per text (for token-level tests)."""

    def __init__(self, hidden_size: int = 64, n_layers: int = 2, tokens: dict[str, np.ndarray] | None = None):
        self.name, self.fingerprint = "stub", "stub-fingerprint"
        self.hidden_size, self.n_layers = hidden_size, n_layers
        self.tokens = tokens or {}

    def iter_token_states(self, texts, layers, *, skip_positions=1):
        for i, text in enumerate(texts):
            values = self.tokens[text][skip_positions:]
            yield TokenStates(
                text_index=np.full(len(values), i),
                position=np.arange(skip_positions, skip_positions + len(values)),
                values={layer: values for layer in layers},
            )


def save_sae(path, *, d_in=64, d_sae=16, hook_name="blocks.0.hook_resid_post", architecture="topk", **cfg):
    """A random sae-lens SAE saved to ``path``; returns the in-memory SAE."""
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(0)
    metadata = SAEMetadata(hook_name=hook_name) if hook_name else SAEMetadata()
    if architecture == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=cfg.pop("k", 4), metadata=metadata, **cfg))
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=metadata, **cfg))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    sae.save_model(path)
    return sae


def test_layer_hook_mapping_both_ways():
    assert layer_to_hook(0) == "blocks.0.hook_resid_pre"
    assert layer_to_hook(1) == "blocks.0.hook_resid_post"
    assert layer_to_hook(15) == "blocks.14.hook_resid_post"
    for layer in range(40):
        assert hook_to_layer(layer_to_hook(layer)) == layer
    assert hook_to_layer("blocks.7.hook_resid_pre") == 7  # resid_pre of block 7 = output of block 7 - 1
    with pytest.raises(SAEMismatchError, match="not the residual stream"):
        hook_to_layer("blocks.3.attn.hook_z")
    with pytest.raises(SAEMismatchError):
        layer_to_hook(-1)


def test_load_round_trip_and_encode_matches_sae_encode(tmp_path):
    saved = save_sae(tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae", backend=StubBackend())
    assert (loaded.layer, loaded.hook_name, loaded.d_in, loaded.d_sae, loaded.k) == (
        1,
        "blocks.0.hook_resid_post",
        64,
        16,
        4,
    )
    assert load_sae(str(tmp_path / "sae"), backend=StubBackend(), layer=1).layer == 1
    x = np.random.default_rng(0).normal(size=(37, 64)).astype(np.float32)
    with torch.no_grad():
        expected = saved.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(encode(loaded, x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode(loaded, x, batch_size=5), expected, rtol=1e-5, atol=1e-6)  # batched == whole
    assert ((encode(loaded, x) > 0).sum(axis=1) <= 4).all()
    with pytest.raises(SAEMismatchError, match=r"\(n, 64\)"):
        encode(loaded, x[:, :10])


def test_width_layer_and_range_mismatches_are_clear_errors(tmp_path):
    save_sae(tmp_path / "narrow", d_in=32)
    with pytest.raises(SAEMismatchError, match="hidden size 64"):
        load_sae(tmp_path / "narrow", backend=StubBackend())
    save_sae(tmp_path / "l1")
    with pytest.raises(SAEMismatchError, match=r"reads layer 1 .* not layer 2; pass layer=1"):
        load_sae(tmp_path / "l1", backend=StubBackend(), layer=2)
    save_sae(tmp_path / "deep", hook_name="blocks.9.hook_resid_post")
    with pytest.raises(SAEMismatchError, match="layers 0 to 2"):
        load_sae(tmp_path / "deep", backend=StubBackend())
    save_sae(tmp_path / "nohook", hook_name=None)
    with pytest.raises(SAEMismatchError, match="pass layer="):
        load_sae(tmp_path / "nohook", backend=StubBackend())
    assert load_sae(tmp_path / "nohook", backend=StubBackend(), layer=2).hook_name == "blocks.1.hook_resid_post"


def test_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(SAENotFoundError, match="not a folder"):
        load_sae(tmp_path / "missing", backend=StubBackend())
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAENotFoundError, match=r"no cfg\.json"):
        load_sae(tmp_path / "empty", backend=StubBackend())
    with pytest.raises(SAENotFoundError, match="not a folder"):
        load_sae("no-such-release/layer_3", backend=StubBackend())


def test_pretrained_release_offline_is_a_clear_error():
    from biasaudit.concepts.sae import SAEHubUnreachableError

    # conftest sets HF_HUB_OFFLINE=1, so the hub counts as unreachable and only the cache is read
    with pytest.raises(SAEHubUnreachableError, match="hub is unreachable"):
        load_sae("gpt2-small-res-jb/blocks.0.hook_resid_pre", backend=StubBackend(hidden_size=768, n_layers=12))


def test_external_activation_scaling_is_folded_on_load(tmp_path):
    saved = save_sae(tmp_path / "scaled", normalize_activations="expected_average_only_in")
    x = np.random.default_rng(1).normal(size=(20, 64)).astype(np.float32)
    with pytest.raises(SAEMismatchError, match=r"activation_scaler\.json"):
        load_sae(tmp_path / "scaled", backend=StubBackend())
    (tmp_path / "scaled" / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 2.5}))
    loaded = load_sae(tmp_path / "scaled", backend=StubBackend())
    assert loaded.sae.cfg.normalize_activations == "none"
    with torch.no_grad():
        expected = saved.encode(torch.from_numpy(x) * 2.5).numpy()  # what the SAE saw in training
    np.testing.assert_allclose(encode(loaded, x), expected, rtol=1e-4, atol=1e-5)


def synthetic_concept_sae(tmp_path, concept_latent=3):
    """A ReLU SAE whose latent j reads input dimension j with threshold 0.5: latents fire only on large inputs."""
    sae = save_sae(tmp_path / "synthetic", d_sae=16, architecture="standard")
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(64)[:, :16])
        sae.b_enc.fill_(-0.5)
        sae.b_dec.zero_()
        sae.W_dec.copy_(torch.eye(64)[:16])
    sae.save_model(tmp_path / "synthetic")
    rng = np.random.default_rng(0)
    generic = rng.normal(0, 0.1, size=(40, 64)).astype(np.float32)
    concept = rng.normal(0, 0.1, size=(30, 64)).astype(np.float32)
    concept[:, concept_latent] = np.linspace(1.0, 3.0, 30)  # strongest on the last concept text
    generic[:5, 7] += 1.5  # latent 7 fires on a few generic texts only
    return tmp_path / "synthetic", concept, generic


def test_concept_analysis_finds_the_latent_that_fires_only_on_the_concept(tmp_path):
    path, concept, generic = synthetic_concept_sae(tmp_path)
    loaded = load_sae(path, backend=StubBackend())
    c_texts = [f"concept {i}" for i in range(len(concept))]
    g_texts = [f"generic {i}" for i in range(len(generic))]
    analysis = SAEConceptAnalysis(loaded, n_top_latents=3, n_top_examples=4, n_repeats=3).fit(
        concept, generic, c_texts, g_texts, concept="fruit"
    )
    top = analysis.top_latents_[0]
    assert top.latent == 3 and top.mean_difference > 1.0
    assert top.fire_rate_concept == 1.0 and top.fire_rate_generic == 0.0
    assert [e.text for e in top.top_examples] == ["concept 29", "concept 28", "concept 27", "concept 26"]
    assert all(e.source == "concept" for e in top.top_examples)
    assert all(t.latent != 7 for t in analysis.top_latents_)  # fires more on generic text: not listed
    result = analysis.result_
    assert result.cav_accuracy >= 0.95 and result.cav_top_latents[0] == 3 and top.cav_weight > 0.5
    assert result.concept == "fruit" and result.layer == 1 and not result.token_level_examples
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["top_latents"][0]["top_examples"][0]["text"] == "concept 29"
    assert analysis.concept_latents_.shape == (30, 16) and analysis.mean_difference_.shape == (16,)


def test_concept_analysis_token_level_examples_use_each_texts_best_token(tmp_path):
    path, concept, generic = synthetic_concept_sae(tmp_path)
    c_texts = [f"concept {i}" for i in range(len(concept))]
    g_texts = [f"generic {i}" for i in range(len(generic))]
    rng = np.random.default_rng(2)
    tokens = {t: rng.normal(0, 0.1, size=(5, 64)).astype(np.float32) for t in c_texts + g_texts}
    tokens["concept 4"][2, 3] = 9.0  # one token of one text: the strongest example at token level
    tokens["concept 9"][0, 3] = 50.0  # position 0 is skipped, as in SAE training
    backend = StubBackend(tokens=tokens)
    loaded = load_sae(path, backend=backend)
    analysis = SAEConceptAnalysis(loaded, n_top_latents=1, fit_cav=False).fit(
        concept, generic, c_texts, g_texts, backend=backend
    )
    top = analysis.top_latents_[0]
    assert analysis.result_.token_level_examples and analysis.cav_ is None and top.cav_weight is None
    assert top.latent == 3 and top.top_examples[0].text == "concept 4"
    assert top.top_examples[0].activation == pytest.approx(8.5, abs=1e-5)
    assert "concept 9" not in [e.text for e in top.top_examples]


def test_concept_analysis_checks_texts_match_rows(tmp_path):
    path, concept, generic = synthetic_concept_sae(tmp_path)
    analysis = SAEConceptAnalysis(load_sae(path, backend=StubBackend()), fit_cav=False)
    with pytest.raises(SAEMismatchError, match="one text per activation row"):
        analysis.fit(concept, generic, ["only one"], ["g"] * len(generic))


def tiny_gpt2_in_both_libraries(vocab_size: int):
    """One random GPT-2 (LayerNorm) as a Hugging Face model and as a TransformerLens HookedTransformer
    with the weight processing sae-lens uses for ``center_writing_weights: true`` releases (no hub)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4))
    hf = hf.eval().requires_grad_(False)
    with torch.no_grad():  # biases far from zero, so that an uncentred stream is visibly off
        for name, param in hf.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.5)
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_mlp=128, d_vocab=vocab_size, act_fn="gelu_new",
        normalization_type="LN", eps=1e-5, original_architecture="GPT2LMHeadModel",
        positional_embedding_type="standard",
    )  # fmt: skip
    tl = HookedTransformer(cfg)
    tl.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=True, center_unembed=False,
        fold_value_biases=False, refactor_factored_attn_matrices=False,
    )  # fmt: skip
    return hf, tl.eval()


def test_published_sae_gets_the_residual_stream_transformerlens_gave_it(tmp_path, tokenizer):
    """An SAE released with ``model_from_pretrained_kwargs: {center_writing_weights: true}`` was trained on
    TransformerLens's centred residual stream; ``encode`` of our Hugging Face hook's activations must give
    the same latents as the SAE on ``run_with_cache``'s activations (and the raw stream must not)."""
    from sae_lens import SAE

    from biasaudit.backend.hf import HFBackend

    hf, tl = tiny_gpt2_in_both_libraries(len(tokenizer))
    backend = HFBackend(hf, tokenizer, progress=False)
    texts = ["The nurse said she would be home by six.", "A bicycle leaned on the fence."]
    layer = 1
    hook = layer_to_hook(layer)
    save_sae(tmp_path / "released", d_in=32, d_sae=16, hook_name=hook, architecture="standard")
    cfg_path = tmp_path / "released" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["metadata"]["model_from_pretrained_kwargs"] = {"center_writing_weights": True}
    cfg_path.write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sae-lens's "load the model with these kwargs" is handled, not shown
        loaded = load_sae(tmp_path / "released", backend=backend)
    assert loaded.input_transform == "center"
    states = list(backend.iter_token_states(texts, [layer], skip_positions=0))
    ours = np.concatenate([s.values[layer] for s in states])
    theirs = []
    for text in texts:
        ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids])
        _, cache = tl.run_with_cache(ids, names_filter=hook)
        theirs.append(cache[hook][0].numpy())
    theirs = np.concatenate(theirs)
    assert np.abs(ours - theirs).max() > 0.1  # the raw Hugging Face stream is not what the SAE saw
    np.testing.assert_allclose(ours - ours.mean(axis=1, keepdims=True), theirs, atol=1e-4)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = SAE.load_from_disk(tmp_path / "released").encode(torch.from_numpy(theirs)).numpy()
    np.testing.assert_allclose(encode(loaded, ours), expected, atol=1e-4)


def test_rmsnorm_models_and_unprocessed_releases_get_the_raw_stream():
    from biasaudit.concepts.sae import input_transform

    class WithConfig:
        def __init__(self, **config):
            self.model = type("M", (), {"config": type("C", (), config)()})()

    centred = {"model_from_pretrained_kwargs": {"center_writing_weights": True}}
    assert input_transform(centred, WithConfig(layer_norm_epsilon=1e-5)) == "center"
    # TransformerLens skips the centring for RMSNorm models.
    assert input_transform(centred, WithConfig(rms_norm_eps=1e-6)) is None
    assert input_transform({"model_from_pretrained_kwargs": {"fold_ln": False}}, WithConfig()) is None
    assert input_transform({}, WithConfig()) is None
