"""A finished audit read back from its folder: ``load_run(DIR)`` -> ``Run`` (results, findings, a tidy frame).

Everything comes from ``results.json`` (and, when the run logged them, ``samples/<suite>.jsonl``): a
report renders, and a notebook analyses, without the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biasaudit.audit.runner import SCHEMA_VERSION
from biasaudit.errors import ConfigError, DatasetFormatError, DatasetNotFoundError
from biasaudit.suite import Finding, SkippedResult, SuiteResult, builtin_suites

if TYPE_CHECKING:
    import pandas as pd

FRAME_COLUMNS = ("suite", "metric", "group", "value", "ci_low", "ci_high", "n")


@dataclass
class Run:
    """One audit run: its folder, the ``results.json`` document and each suite's typed result."""

    folder: Path
    document: dict[str, Any]
    results: dict[str, SuiteResult]
    _samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def model(self) -> dict[str, Any]:
        return dict(self.document.get("model") or {})

    def skipped(self) -> dict[str, str]:
        """{suite: why} for the suites that could not run here."""
        return {name: r.skipped for name, r in self.results.items() if isinstance(r, SkippedResult)}

    def effects(self) -> list[Finding]:
        """Every tested effect of every suite, in suite order."""
        return [effect for result in self.results.values() for effect in result.effects()]

    def findings(self) -> list[Finding]:
        """The significant effects, strongest first (distance from the no-bias value in interval half-widths)."""

        def strength(f: Finding) -> float:
            half = (f.ci95[1] - f.ci95[0]) / 2
            return abs(f.estimate - f.null) / half if half > 0 else float("inf")

        return sorted((f for f in self.effects() if f.significant), key=strength, reverse=True)

    def samples(self, suite: str) -> list[dict[str, Any]]:
        """The suite's per-example records from ``samples/<suite>.jsonl`` (empty when not logged)."""
        if suite not in self._samples:
            path = self.folder / "samples" / f"{suite}.jsonl"
            rows = []
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    row = json.loads(line)
                    if row.get("type") == "example":
                        rows.append({k: v for k, v in row.items() if k != "type"})
            self._samples[suite] = rows
        return self._samples[suite]

    def frame(self) -> pd.DataFrame:
        """A tidy table of every estimate in the run: suite, metric, group, value, ci_low, ci_high, n."""
        import pandas as pd

        rows = [row for name, entry in self.document["suites"].items() for row in _estimate_rows(name, entry["result"])]
        return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


# Path components that only nest the JSON (dropped from a row's group name).
_NESTING = {"results", "tasks", "bias", "overall"}


def _group(path: tuple[str, ...]) -> str:
    return "/".join(part for part in path if part not in _NESTING) or "overall"


def _estimate_rows(suite: str, data: Any, path: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every estimate with its interval under ``data``, one row each.

    Read: ``Estimate.to_dict()`` blocks (``{"value", "ci95", "n"}``: the last key is the metric, the keys
    above it the group, e.g. ``by_bias_type/gender``), a number beside its ``<name>_ci`` (LVLM metrics),
    LVLM's paired ``accuracy_change``, BiasLens categories and probes (``score`` with ``ci``) and the
    content-free prior (``mean_p_yes`` with ``ci95``).
    """
    rows: list[dict[str, Any]] = []
    if isinstance(data, dict):
        if "value" in data and "ci95" in data and path:
            return [_row(suite, path[-1], _group(path[:-1]), data["value"], data["ci95"], data.get("n"))]
        if "delta" in data and "ci" in data and path:
            return [_row(suite, path[-1], _group(path[:-1]), data["delta"], data["ci"], data.get("n"))]
        if "score" in data and "ci" in data and ("category" in data or "target" in data):
            group = data.get("category") or f"{data['target']} ({data['reference_a']} vs {data['reference_b']})"
            metric = f"score_{data.get('space', 'residual')}"
            rows.append(_row(suite, metric, group, data["score"], data["ci"], data.get("n_scored")))
        if "mean_p_yes" in data and "ci95" in data:
            rows.append(_row(suite, "p_yes", _group(path), data["mean_p_yes"], data["ci95"], data.get("n_prompts")))
        for key, value in data.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and f"{key}_ci" in data:
                rows.append(_row(suite, key, _group(path), value, data[f"{key}_ci"], data.get("n")))
            else:
                rows.extend(_estimate_rows(suite, value, (*path, str(key))))
    elif isinstance(data, list) and path and path[-1] in ("categories", "probes"):
        for item in data:
            rows.extend(_estimate_rows(suite, item, path[:-1]))
    return rows


def _row(suite: str, metric: str, group: str, value: Any, ci: Any, n: Any) -> dict[str, Any]:
    low, high = ci if ci else (None, None)
    return {"suite": suite, "metric": metric, "group": group, "value": value, "ci_low": low, "ci_high": high, "n": n}


def load_run(folder: str | Path) -> Run:
    """Read the audit run in ``folder`` (its ``results.json``); a clear error when it is not one."""
    folder = Path(folder)
    path = folder / "results.json"
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} not found: name the --out folder of a `biasaudit audit` run")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has schema_version {version!r}; this biasaudit reads version {SCHEMA_VERSION}: "
            "re-run the audit with this version (finished units are reused from the run's store)"
        )
    suites = builtin_suites()
    results: dict[str, SuiteResult] = {}
    for name, entry in document["suites"].items():
        if name not in suites:
            raise ConfigError(f"{path}: suite {name!r} is not known to this biasaudit version")
        results[name] = suites[name].load(entry["result"])
    return Run(folder=folder, document=document, results=results)
