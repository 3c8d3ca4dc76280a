"""Suites, the unit of measurement: a registered ``run(backend, config) -> SuiteResult`` per method.

Each method package owns its suites (``negbias/suite.py``, ``calibration/suite.py``,
``biaslens/suite.py``, ``metrics/suite.py``) and registers them here with ``@register_suite``; the
audit runner and the CLI find them by name. A suite receives the backend protocol, never a concrete
model, and returns a typed ``SuiteResult``:

- ``to_dict()`` / ``from_dict()``: the JSON the run folder keeps, read back on resume and by the report;
- ``headline()``: the one line the terminal prints;
- ``effects()``: every effect the suite tests, each a ``Finding`` with estimate, 95 % interval, no-bias
  value, p-value where the method has one, and a one-sentence reading; ``findings()``: those whose
  interval excludes the no-bias value;
- ``samples()``: per-example records for ``--log-samples`` (kept out of ``to_dict``).

This module sits beside ``stats.py`` and ``errors.py``: method packages import it, it imports none of
them until a suite is looked up (``builtin_suites``).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from biasaudit.errors import ConfigError, InvalidRequestError

if TYPE_CHECKING:
    from biasaudit.audit.config import RunConfig

# The modules whose import registers the built-in suites, in the order ``biasaudit audit`` runs them.
SUITE_MODULES = (
    "biasaudit.negbias.suite",
    "biasaudit.calibration.suite",
    "biasaudit.biaslens.suite",
    "biasaudit.metrics.suite",
    "biasaudit.lvlm.suite",
)


@dataclass(frozen=True)
class Finding:
    """One effect a suite tested: its estimate, 95 % interval and ``null`` (the no-bias value).

    It is a finding proper when the interval excludes ``null`` (``significant``); the others are what the
    report lists as tested without evidence of bias.

    ``effect`` names what was measured (``"pct_stereotype[race-color]"``); ``reading`` says in one
    sentence what it means for this model; ``p_value`` is given where the method tests the effect.
    """

    suite: str
    effect: str
    estimate: float
    ci95: tuple[float, float]
    null: float
    reading: str
    p_value: float | None = None
    n: int | None = None

    @property
    def significant(self) -> bool:
        """Whether the 95 % interval excludes the no-bias value."""
        return excludes(self.ci95, self.null)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ci95": list(self.ci95)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        from biasaudit.jsonio import dataclass_from_dict

        data = dict(data)
        data["ci95"] = tuple(data.get("ci95") or ())
        return dataclass_from_dict(cls, data, "finding")


def excludes(ci95: Any, null: float) -> bool:
    """True when a ``[low, high]`` interval lies wholly on one side of ``null`` (None: never)."""
    return ci95 is not None and len(ci95) == 2 and (ci95[0] > null or ci95[1] < null)


def effect_from_estimate(
    suite: str,
    effect: str,
    estimate: Mapping[str, Any] | None,
    null: float,
    reading: Callable[[float, tuple[float, float]], str],
    p_value: float | None = None,
) -> Finding | None:
    """The tested effect of an ``Estimate.to_dict()``-shaped mapping: a ``Finding`` when it has a value and a
    95 % interval (significant or not, see ``Finding.significant``), else None: no interval, no claim.

    ``reading(value, ci95)`` writes the sentence a reader sees when the effect is significant.
    """
    if not estimate or estimate.get("value") is None or not estimate.get("ci95") or len(estimate["ci95"]) != 2:
        return None
    value = float(estimate["value"])
    low, high = (float(x) for x in estimate["ci95"])
    return Finding(suite, effect, value, (low, high), null, reading(value, (low, high)), p_value, estimate.get("n"))


def fields_from_dict(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``data`` checked against ``cls``'s dataclass fields (a ``ConfigError`` naming unknown or missing keys)."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("saved", True)}
    required = {
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown = sorted(set(data) - set(fields))
    missing = sorted(required - set(data))
    if unknown or missing:
        raise ConfigError(f"{what} result does not match this version: unknown {unknown}, missing {missing}")
    return dict(data)


# Field metadata for what a result holds but does not save in ``to_dict`` (its per-example samples).
NOT_SAVED = {"saved": False}


class SuiteResult(ABC):
    """What a suite returns. Subclasses are dataclasses whose fields are the result's JSON keys.

    A field declared with ``metadata=NOT_SAVED`` (per-example samples) stays out of ``to_dict``.
    ``metrics`` names the estimates (with intervals) the result holds, as the run's tidy frame and the
    CI gates (``--fail-on``) call them.
    """

    suite: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.metadata.get("saved", True)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**fields_from_dict(cls, data, cls.suite))

    @abstractmethod
    def headline(self) -> str:
        """One line for the terminal: the suite's main numbers."""

    def effects(self) -> list[Finding]:
        """Every effect this result tests with a 95 % interval, significant or not (none by default)."""
        return []

    def findings(self) -> list[Finding]:
        """The effects whose 95 % interval excludes the no-bias value."""
        return [effect for effect in self.effects() if effect.significant]

    def samples(self) -> list[dict[str, Any]]:
        """Per-example records for ``--log-samples`` (none by default)."""
        return []


@dataclass
class SkippedResult(SuiteResult):
    """A suite that could not run here (its data are absent), and why."""

    suite: ClassVar[str] = "skipped"
    skipped: str

    def headline(self) -> str:
        return f"skipped: {self.skipped}"


# ``(backend, config) -> result``: the backend is a ``Backend`` (text) or a ``VisionBackend`` (``vlm``).
SuiteFn = Callable[[Any, "RunConfig"], SuiteResult]


@dataclass(frozen=True)
class Suite:
    """A registered measurement: ``run(backend, config) -> result_type`` (or a ``SkippedResult``).

    ``backend`` is the kind of model it measures: ``hf`` (text) or ``vlm`` (vision-language).
    ``data`` / ``probes``: the dataset folders (under the data folder) and shipped probe folders (under
    ``probes/``) it reads; their digests are part of its resume key (``inputs_digest``).
    """

    name: str
    description: str
    run: SuiteFn
    result_type: type[SuiteResult]
    backend: str = "hf"
    data: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()

    def inputs_digest(self, data_dir: str | None) -> dict[str, dict[str, str | None]]:
        """Digest of each dataset and probe folder this suite reads (None: absent)."""
        from pathlib import Path

        from biasaudit.datasets import default_data_dir, folder_digest
        from biasaudit.errors import DatasetNotFoundError
        from biasaudit.probes import probe_dirs

        root: Path | None
        try:
            root = Path(data_dir) if data_dir else (default_data_dir() if self.data else None)
        except DatasetNotFoundError:
            root = None
        return {
            "data": {name: folder_digest(root / name) if root else None for name in self.data},
            "probes": {name: "+".join(str(folder_digest(d / name)) for d in probe_dirs()) for name in self.probes},
        }

    def load(self, data: Mapping[str, Any]) -> SuiteResult:
        """A saved result read back (``ConfigError`` when it does not match this version's fields)."""
        if "skipped" in data:
            return SkippedResult.from_dict(data)
        return self.result_type.from_dict(data)


SUITES: dict[str, Suite] = {}


def register_suite(
    name: str,
    description: str,
    result_type: type[SuiteResult],
    *,
    backend: str = "hf",
    data: tuple[str, ...] = (),
    probes: tuple[str, ...] = (),
) -> Callable[[SuiteFn], SuiteFn]:
    """Decorator: make ``fn(backend, config) -> result_type`` available as suite ``name`` for ``backend``
    models; ``data`` and ``probes`` name the dataset and probe folders it reads (see ``Suite``)."""

    def wrap(fn: SuiteFn) -> SuiteFn:
        if name in SUITES:
            raise InvalidRequestError(f"suite {name!r} is registered twice")
        SUITES[name] = Suite(name, description, fn, result_type, backend, tuple(data), tuple(probes))
        return fn

    return wrap


def builtin_suites() -> dict[str, Suite]:
    """Every registered suite, after importing the method packages' suite modules (cheap: runs are lazy)."""
    for module in SUITE_MODULES:
        importlib.import_module(module)
    return SUITES


def resolve_suites(names: list[str], backend: str = "hf") -> list[Suite]:
    """The suites named (every suite for this kind of model when ``names`` is empty), refusing unknown
    names and suites for another kind of model (a text suite on a vision-language model, or the reverse)."""
    suites = builtin_suites()
    if not names:
        return [suite for suite in suites.values() if suite.backend == backend]
    unknown = [n for n in names if n not in suites]
    if unknown:
        raise InvalidRequestError(f"unknown suite(s) {unknown}; available: {sorted(suites)}")
    other = [n for n in names if suites[n].backend != backend]
    if other:
        kinds = {"hf": "text", "vlm": "vision-language"}
        fits = sorted(s.name for s in suites.values() if s.backend == backend)
        raise InvalidRequestError(
            f"suite(s) {other} measure {kinds.get(suites[other[0]].backend, suites[other[0]].backend)} models; "
            f"this model is loaded as {kinds.get(backend, backend)}: choose among {fits}"
        )
    return [suites[n] for n in dict.fromkeys(names)]
