"""BiasLens probe suites as data: ``probes/biaslens/<category>.yaml``.

A suite names the concept groups it needs and a list of probes, each a target concept and an ordered
reference pair (A, B). By convention A is the group the documented stereotype associates with the
target, so a positive score is stereotype-consistent. ``traditional`` maps the category to its name in
the test-set-based benchmarks (``crows_pairs``, ``bbq``, ``stereoset``) for the validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biasaudit.errors import InvalidRequestError
from biasaudit.probes import (
    ProbeValidationError,
    find_probe_file,
    list_probe_files,
    probe_from_mapping,
    read_probe_yaml,
)

TRADITIONAL_BENCHMARKS = ("crows_pairs", "bbq", "stereoset")


@dataclass(frozen=True)
class Probe:
    target: str
    references: list[str]

    def validate(self) -> None:
        if len(self.references) != 2:
            raise InvalidRequestError(f"probe {self.target!r}: references must be a pair [A, B], got {self.references}")
        if len({self.target, *self.references}) != 3:
            raise InvalidRequestError(f"probe {self.target!r}: target and references must be three different concepts")
        for concept in (self.target, *self.references):
            if "/" not in concept:
                raise InvalidRequestError(f"probe concept {concept!r} must be written group/name")


@dataclass(frozen=True)
class ProbeSuite:
    name: str
    category: str
    description: str
    groups: list[str]
    probes: list[Probe]
    traditional: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        unknown = sorted(set(self.traditional) - set(TRADITIONAL_BENCHMARKS))
        if unknown:
            raise InvalidRequestError(
                f"traditional: unknown benchmark(s) {unknown}; known: {list(TRADITIONAL_BENCHMARKS)}"
            )
        for probe in self.probes:
            for concept in (probe.target, *probe.references):
                if concept.split("/", 1)[0] not in self.groups:
                    raise InvalidRequestError(f"probe concept {concept!r} is not in the suite's groups {self.groups}")


def suite_from_mapping(data: Any, source: str) -> ProbeSuite:
    if not isinstance(data, dict):
        raise ProbeValidationError(f"{source}: the file must hold a mapping of fields")
    raw = data.get("probes")
    if not isinstance(raw, list) or not raw:
        raise ProbeValidationError(f"{source}: field 'probes' must be a non-empty list")
    probes = [probe_from_mapping(Probe, item, f"{source}: probes[{i}]") for i, item in enumerate(raw)]
    return probe_from_mapping(ProbeSuite, {**data, "probes": probes}, source)


def load_probe_suite(name_or_path: str | Path) -> ProbeSuite:
    """``probes/biaslens/<name>.yaml`` (or a path), validated; errors name the file and field."""
    path = Path(name_or_path)
    if not (path.suffix in {".yaml", ".yml"} and path.is_file()):
        path = find_probe_file(f"biaslens/{name_or_path}.yaml") or path
    if not path.is_file():
        raise ProbeValidationError(f"BiasLens suite {str(name_or_path)!r} not found; shipped: {shipped_suites()}")
    return suite_from_mapping(read_probe_yaml(path), str(path))


def shipped_suites() -> list[str]:
    return [p.stem for p in list_probe_files("biaslens")]
