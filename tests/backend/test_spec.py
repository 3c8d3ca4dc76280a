"""BackendSpec: one parser for --model_args, checked before any weights load; one factory for every command."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from biasaudit.backend.spec import MODEL_ARGS, BackendSpec, load_backend, parse_model_args
from biasaudit.errors import ConfigError, InvalidRequestError, MissingDependencyError

ISSUE_EXAMPLE = (
    "revision=main,peft=PATH,device_map=auto,load_in_4bit=True,attn_implementation=sdpa,"
    "max_length=4096,dtype=bfloat16,trust_remote_code=True"
)


def test_lm_eval_syntax_parses_and_values_get_their_key_types():
    spec = BackendSpec.parse("org/model", model_args=ISSUE_EXAMPLE)
    assert spec.model_args == {
        "revision": "main",
        "peft": "PATH",
        "device_map": "auto",
        "load_in_4bit": True,
        "attn_implementation": "sdpa",
        "max_length": 4096,
        "dtype": "bfloat16",
        "trust_remote_code": True,
    }
    assert spec.dtype == "bfloat16" and spec.trust_remote_code
    options = spec.load_options()
    assert (options.revision, options.peft) == ("main", "PATH")
    assert (options.device_map, options.quantization) == ("auto", "4bit")
    assert parse_model_args(" revision = v1 , ,dtype=float32") == {"revision": "v1", "dtype": "float32"}
    assert parse_model_args(None) == {} == parse_model_args("")
    assert parse_model_args("revision=a=b") == {"revision": "a=b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("revison=main", r"unknown model_args key\(s\) \['revison'\].*allowed: dtype, revision, peft"),
        ("load_in_4bit=maybe", "expected True or False"),
        ("max_length=long", "expected a whole number"),
        ("max_length=0", "at least 1"),
        ("load_in_8bit=True,load_in_4bit=True", "choose one of load_in_8bit and load_in_4bit"),
        ("dtype=int3", "unknown dtype 'int3'"),
        ("revision", "is not key=value"),
        ("revision=a,revision=b", "given twice"),
        ("peft=", "is empty"),
    ],
)
def test_bad_model_args_fail_naming_the_problem(text, message):
    with pytest.raises(ConfigError, match=message):
        BackendSpec.parse("default", model_args=text)


def test_shorthand_flags_merge_into_model_args_and_must_agree():
    spec = BackendSpec.parse("default", dtype="float32", trust_remote_code=True)
    assert spec.model_args == {"dtype": "float32", "trust_remote_code": True}
    assert BackendSpec.parse("default", model_args="dtype=float32", dtype="float32").dtype == "float32"
    with pytest.raises(ConfigError, match="--dtype and model_args dtype=bfloat16 disagree"):
        BackendSpec.parse("default", model_args="dtype=bfloat16", dtype="float32")


def test_spec_round_trips_and_rejects_bad_fields():
    spec = BackendSpec.parse("m", model_args="revision=v2,max_length=128", device="cpu", batch_size=4)
    assert BackendSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="unknown backend 'tgi'"):
        BackendSpec(model="m", backend="tgi")
    with pytest.raises(ConfigError, match="batch_size"):
        BackendSpec(model="m", batch_size=0)
    with pytest.raises(ConfigError, match="max_length"):  # the VLM backend has no max_length
        BackendSpec(model="m", backend="vlm", model_args={"max_length": 8})
    other = spec.for_model("generator")
    assert other.model == "generator" and other.model_args == {"max_length": 128} and other.batch_size == 4


def test_every_key_has_a_type_and_a_help_line():
    for key, (kind, help_text) in MODEL_ARGS.items():
        assert kind in (str, int, bool) and help_text, key


# ----------------------------------------------------------------------------- loading (tiny local models)
@pytest.fixture
def tiny_dir(tmp_path, tiny_model, tokenizer):
    folder = tmp_path / "tiny"
    tiny_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _logits(backend, ids):
    return backend.model(input_ids=torch.tensor([ids])).logits


def test_load_backend_passes_loading_options(tiny_dir, tiny_model):
    ids = [5, 17, 300, 42]
    plain = load_backend(BackendSpec(model=str(tiny_dir), device="cpu"), progress=False)
    assert torch.equal(_logits(plain, ids), tiny_model(torch.tensor([ids])).logits)
    eager = load_backend(BackendSpec(model=str(tiny_dir), model_args={"attn_implementation": "eager"}), progress=False)
    assert eager.model.config._attn_implementation == "eager"
    torch.testing.assert_close(_logits(eager, ids), _logits(plain, ids))
    if importlib.util.find_spec("accelerate") is not None:
        mapped = load_backend(BackendSpec(model=str(tiny_dir), model_args={"device_map": "cpu"}), progress=False)
        assert mapped.device == torch.device("cpu")
        assert torch.equal(_logits(mapped, ids), _logits(plain, ids))


def test_options_that_cannot_apply_fail_before_weights_load(tiny_dir, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(ConfigError, match=r"revision='v2' names a hub revision, but .* is a local model"):
        load_backend(BackendSpec(model=str(tiny_dir), model_args={"revision": "v2"}))
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(MissingDependencyError, match="pip install bitsandbytes"):
            load_backend(BackendSpec(model=str(tiny_dir), model_args={"load_in_4bit": True}))


def test_peft_adapter_is_loaded_and_merged(tiny_dir, tmp_path, tiny_model):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    adapted = peft.get_peft_model(
        type(tiny_model)(tiny_model.config),
        peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    adapted.base_model.model.load_state_dict(tiny_model.state_dict(), strict=False)
    adapter_dir = tmp_path / "adapter"
    adapted.save_pretrained(adapter_dir)
    adapted.eval()

    ids = [5, 17, 300, 42]
    base = load_backend(BackendSpec(model=str(tiny_dir)), progress=False)
    tuned = load_backend(BackendSpec(model=str(tiny_dir), model_args={"peft": str(adapter_dir)}), progress=False)
    assert not isinstance(tuned.model, peft.PeftModel)  # merged: the backend sees one plain model
    with torch.no_grad():
        expected = adapted(input_ids=torch.tensor([ids])).logits
    torch.testing.assert_close(_logits(tuned, ids), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(_logits(tuned, ids), _logits(base, ids), atol=1e-3)
    assert tuned.name.endswith("+adapter") and tuned.fingerprint != base.fingerprint
    with pytest.raises(Exception, match="PEFT adapter"):
        load_backend(BackendSpec(model=str(tiny_dir), model_args={"peft": str(tmp_path / "nope")}))


def test_max_length_refuses_longer_inputs_instead_of_cutting_them(tiny_model, tokenizer):
    from biasaudit.backend.hf import HFBackend

    backend = HFBackend(tiny_model, tokenizer, progress=False, max_length=6)
    short = backend.loglikelihood([("a b", " c")])
    free = HFBackend(tiny_model, tokenizer, progress=False)
    assert short[0].logprob == free.loglikelihood([("a b", " c")])[0].logprob
    with pytest.raises(InvalidRequestError, match=r"of \d+ tokens exceeds max_length=6"):
        backend.loglikelihood([("one two three four five six seven", " eight")])
    with pytest.raises(InvalidRequestError, match="exceeds max_length=6"):
        backend.hidden_states(["one two three four five six seven eight"], layers=[1])
