"""Which model to load and how: one spec, one parser, one factory for every command.

``BackendSpec`` is everything a command needs to build its backend: the model (``default``, a folder,
a ``.gguf`` file or a hub id), the backend kind (``hf`` for text models, ``vlm`` for image-text
models), ``model_args`` in lm-evaluation-harness syntax, the device and the batch size. Every CLI
command takes the same options (``biasaudit/cli/common.py``) and calls ``load_backend(spec)``, so a
revision, an adapter or a device map works the same everywhere.

``model_args`` is a comma-separated ``key=value`` list, as lm-eval's ``--model_args``::

    revision=main,peft=./adapter,device_map=auto,load_in_4bit=True,attn_implementation=sdpa,
    max_length=4096,dtype=bfloat16,trust_remote_code=True

Keys are checked when the spec is made, before any weights load: an unknown key fails naming the
allowed ones, and each value must parse as its key's type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from biasaudit.backend.batching import BatchSize
from biasaudit.errors import ConfigError
from biasaudit.jsonio import dataclass_from_dict

if TYPE_CHECKING:
    from biasaudit.models import LoadOptions

BACKENDS = ("hf", "vlm")
# ``BackendSpec.parse(backend="auto")`` picks one of BACKENDS from the model's config (``detect_backend``).
AUTO = "auto"

# key -> (type, what it does). The order is the order ``--help`` lists them in.
MODEL_ARGS: dict[str, tuple[type, str]] = {
    "dtype": (str, "float32 | bfloat16 | float16 | auto (default: bfloat16 on an accelerator, float32 on the CPU)"),
    "revision": (str, "hub branch, tag or commit of the model"),
    "peft": (str, "PEFT adapter folder or hub id, applied on top of the model"),
    "device_map": (str, "accelerate device map, e.g. auto: spread a large model over the available devices"),
    "load_in_8bit": (bool, "8-bit weights (bitsandbytes)"),
    "load_in_4bit": (bool, "4-bit weights (bitsandbytes)"),
    "attn_implementation": (str, "eager | sdpa | flash_attention_2"),
    "max_length": (int, "longest input in tokens; a longer request fails naming it (hf backend)"),
    "trust_remote_code": (bool, "run the model repository's own Python code (off unless set)"),
}
_HF_ONLY = {"max_length"}
_MODEL_SPECIFIC = {"revision", "peft"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _coerce(key: str, value: Any) -> Any:
    kind, _ = MODEL_ARGS[key]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"model_args {key}={value!r}: expected True or False")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"model_args {key}={value!r}: expected a whole number")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"model_args {key}={value!r}: expected a whole number") from None
        if number < 1:
            raise ConfigError(f"model_args {key}={value!r}: must be at least 1")
        return number
    text = str(value).strip()
    if not text:
        raise ConfigError(f"model_args {key}= is empty")
    return text


def check_model_args(args: dict[str, Any], backend: str = "hf") -> dict[str, Any]:
    """Typed copy of ``args``; fails on an unknown key (naming the allowed ones) or a value of the wrong kind."""
    allowed = [k for k in MODEL_ARGS if backend == "hf" or k not in _HF_ONLY]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown model_args key(s) {unknown} for the {backend} backend; allowed: {', '.join(allowed)}"
        )
    typed = {key: _coerce(key, value) for key, value in args.items()}
    if typed.get("load_in_8bit") and typed.get("load_in_4bit"):
        raise ConfigError("model_args: choose one of load_in_8bit and load_in_4bit")
    if "dtype" in typed:
        from biasaudit.models import resolve_dtype

        if typed["dtype"] != "auto":
            import torch

            resolve_dtype(typed["dtype"], torch.device("cpu"))  # raises ConfigError on an unknown name
    return typed


def parse_model_args(text: str | None) -> dict[str, Any]:
    """``"a=1,b=True"`` -> ``{"a": "1", "b": "True"}`` (lm-evaluation-harness syntax; values typed later)."""
    args: dict[str, Any] = {}
    if not text or not text.strip():
        return args
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"model_args entry {part!r} is not key=value (example: revision=main,dtype=bfloat16)")
        if key in args:
            raise ConfigError(f"model_args key {key!r} given twice")
        args[key] = value.strip()
    return args


@dataclass
class BackendSpec:
    """A model and how to load it; round-trips to JSON (``to_dict`` / ``from_dict``).

    ``batch_size`` and ``device`` change speed, not numbers, so a run's cache key leaves them out
    (``numeric_key``); every ``model_args`` key is in it.
    """

    model: str = "default"
    backend: str = "hf"
    model_args: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    batch_size: BatchSize = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if not self.model or not str(self.model).strip():
            raise ConfigError("no model given")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, int) and self.batch_size >= 1)):
            raise ConfigError(f"batch_size must be a positive integer or 'auto', not {self.batch_size!r}")
        self.model_args = check_model_args(dict(self.model_args), self.backend)

    @classmethod
    def parse(
        cls,
        model: str,
        *,
        model_args: str | None = None,
        backend: str = "hf",
        device: str | None = None,
        batch_size: BatchSize = "auto",
        dtype: str | None = None,
        trust_remote_code: bool = False,
    ) -> BackendSpec:
        """Build a spec from command-line values; ``--dtype`` / ``--trust-remote-code`` are model_args shorthands.

        ``backend="auto"`` reads the model's config and picks ``vlm`` for a vision-language model, else ``hf``.
        """
        args = parse_model_args(model_args)
        for key, value, unset in (("dtype", dtype, None), ("trust_remote_code", trust_remote_code, False)):
            if value == unset:
                continue
            if key in args and _coerce(key, args[key]) != value:
                raise ConfigError(f"--{key.replace('_', '-')} and model_args {key}={args[key]} disagree")
            args[key] = value
        if backend == AUTO:
            backend = detect_backend(model, args)
        return cls(model=model, backend=backend, model_args=args, device=device, batch_size=batch_size)

    # ------------------------------------------------------------------ views
    @property
    def dtype(self) -> str | None:
        return self.model_args.get("dtype")

    @property
    def trust_remote_code(self) -> bool:
        return bool(self.model_args.get("trust_remote_code", False))

    def load_options(self) -> LoadOptions:
        from biasaudit.models import LoadOptions

        args = self.model_args
        quantization = "8bit" if args.get("load_in_8bit") else "4bit" if args.get("load_in_4bit") else None
        return LoadOptions(
            revision=args.get("revision"),
            peft=args.get("peft"),
            device_map=args.get("device_map"),
            quantization=quantization,
            attn_implementation=args.get("attn_implementation"),
        )

    def for_model(self, model: str) -> BackendSpec:
        """The same loading choices for another model (a generator, say): without its revision and adapter."""
        args = {k: v for k, v in self.model_args.items() if k not in _MODEL_SPECIFIC}
        return dataclasses.replace(self, model=model, model_args=args)

    def numeric_key(self) -> dict[str, Any]:
        """The fields that can change a measured number (for cache keys): not device, not batch size."""
        return {"model": self.model, "backend": self.backend, "model_args": dict(sorted(self.model_args.items()))}

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendSpec:
        return dataclass_from_dict(cls, data, "backend-spec")


def detect_backend(model: str, model_args: dict[str, Any] | None = None) -> str:
    """``vlm`` when ``model``'s config describes a vision-language model (it has a ``vision_config``), else ``hf``.

    The default model and ``.gguf`` files are text models. A folder's ``config.json`` is read directly; a
    hub id's config is fetched (or read from the local cache) with its revision. A config that cannot be
    read leaves ``hf``: loading then fails with its own clear error.
    """
    import json
    from pathlib import Path

    if model == "default" or model.endswith(".gguf"):
        return "hf"
    folder = Path(model).expanduser()
    if folder.is_dir():
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            return "hf"
        return "vlm" if isinstance(config, dict) and "vision_config" in config else "hf"
    args = model_args or {}
    try:
        from transformers import AutoConfig

        hub_config = AutoConfig.from_pretrained(
            model, revision=args.get("revision"), trust_remote_code=bool(args.get("trust_remote_code", False))
        )
    except (OSError, ValueError):
        return "hf"
    return "vlm" if getattr(hub_config, "vision_config", None) is not None else "hf"


def load_backend(spec: BackendSpec, **backend_kwargs: Any) -> Any:
    """The backend ``spec`` describes, loaded: the one place every command builds its model.

    A ``Backend`` (``HFBackend``) for ``backend="hf"``, a ``VisionBackend`` (``VLMBackend``) for ``"vlm"``;
    ``backend_kwargs`` go to the backend's constructor (``progress``, ``prefix_reuse``...).
    """
    common: dict[str, Any] = {
        "device": spec.device,
        "dtype": spec.dtype,
        "trust_remote_code": spec.trust_remote_code,
        "options": spec.load_options(),
        "batch_size": spec.batch_size,
        **backend_kwargs,
    }
    if spec.backend == "vlm":
        from biasaudit.backend.vlm import VLMBackend

        return VLMBackend.from_spec(spec.model, **common)
    from biasaudit.backend.hf import HFBackend

    return HFBackend.from_spec(spec.model, max_length=spec.model_args.get("max_length"), **common)
