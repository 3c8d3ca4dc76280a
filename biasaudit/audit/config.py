"""The run configuration: every choice that shapes an audit's numbers, round-tripping to JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from biasaudit.audit.store import DEFAULT_CHUNK_SIZE
from biasaudit.backend.spec import BackendSpec
from biasaudit.errors import ConfigError
from biasaudit.jsonio import dataclass_from_dict


@dataclass
class RunConfig:
    """What to audit and how (the CLI flags of ``biasaudit audit``).

    ``backend`` is the model and how to load it (``BackendSpec``: model, ``model_args``, device, batch
    size). ``suites`` empty means every registered suite. ``limit`` caps the items each suite scores
    (lm-evaluation-harness's ``--limit``), for quick runs. ``data_dir`` holds public datasets
    (default: ``$BIASAUDIT_DATA`` or ``shared/data`` beside the checkout); suites that need them
    report themselves skipped, with the reason, when it is absent. ``sae`` (a folder or sae-lens
    release) adds the SAE-latent space to the ``biaslens`` suite. ``log_samples`` writes every request
    and result of each suite to ``samples/<suite>.jsonl``; ``request_chunk`` is the number of requests
    per stored unit of the run's request store (``audit/store.py``).
    """

    backend: BackendSpec = field(default_factory=BackendSpec)
    suites: list[str] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0
    apply_chat_template: bool = False
    data_dir: str | None = None
    sae: str | None = None
    log_samples: bool = False
    request_chunk: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.request_chunk < 1:
            raise ConfigError(f"request_chunk must be at least 1, got {self.request_chunk}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        data = dict(data)
        if isinstance(data.get("backend"), dict):
            data["backend"] = BackendSpec.from_dict(data["backend"])
        return dataclass_from_dict(cls, data, "run-config")

    @property
    def model(self) -> str:
        return self.backend.model

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def suite_fingerprint(
        self, suite: str, identity: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None
    ) -> str:
        """Hash of what changes a suite's numbers: the loaded weights (``identity``), the spec, the settings,
        and the files it reads (``inputs``).

        ``identity`` is what the loaded backend is (``runner.backend_identity``: weights fingerprint,
        which covers the effective dtype, the device type and the biasaudit version), so new weights at
        the same path, or a resume on another device, recompute instead of reusing. ``inputs`` holds the
        digests of the dataset and probe folders the suite reads (``Suite.inputs_digest``), so an edited
        data file recomputes too. Batch size and the device name are left out: they do not change the numbers.
        """
        key = {
            "suite": suite,
            "identity": identity,
            "inputs": inputs,
            "backend": self.backend.numeric_key(),
            "limit": self.limit,
            "seed": self.seed,
            "apply_chat_template": self.apply_chat_template,
            "data_dir": self.data_dir,
            "sae": self.sae if suite == "biaslens" else None,
            "request_chunk": self.request_chunk,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
