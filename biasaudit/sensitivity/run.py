"""A sensitivity run: plant a bias at several doses and seeds, audit each planted model, and ask of every
effect the audit tests whether it moves with the dose (``analysis.dose_response``).

Layout of the output folder (every step resumes: an adapter whose ``planting.json`` matches its config
is not retrained, and each audit resumes through the audit runner's own store)::

    DIR/sensitivity.json        config, one dose-response per effect, the per-adapter readings
    DIR/sensitivity.md          the table, for docs and pull requests
    DIR/sensitivity.html        the same as a self-contained page, with a dose-response plot per effect
    DIR/adapters/d0.75-s1/      LoRA adapter (safetensors) + planting.json
    DIR/audits/d0.75-s1/        the planted model's audit (results.json, report.html)

The planted model is audited exactly as a user's would be: ``--model_args peft=DIR/adapters/...``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biasaudit.backend.spec import BackendSpec
from biasaudit.errors import InvalidRequestError
from biasaudit.sensitivity.analysis import PLACEBO, DosePoint, DoseResponse, dose_response
from biasaudit.sensitivity.corpus import PLANTINGS, occupation_majorities, planting_corpus
from biasaudit.sensitivity.lora import PlantingConfig, train_adapter

if TYPE_CHECKING:
    from biasaudit.report.run import Run

# The suites whose effects a planting should move (each planting's own measurement first).
SUITES_FOR = {
    "yes_prior": ["yesno_prior", "negbias"],
    "label_prior": ["icl"],
    "gender": ["biaslens", "winogender", "winobias", "crows_pairs", "bbq"],
}
DEFAULT_DOSES = [0.0, 0.25, 0.5, 0.75, 1.0]


@dataclass
class SensitivityConfig:
    """What to plant and audit; round-trips to JSON (``sensitivity.json``'s ``config``)."""

    backend: BackendSpec
    planting: str
    doses: list[float] = field(default_factory=lambda: list(DEFAULT_DOSES))
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    suites: list[str] = field(default_factory=list)  # empty: the planting's own (SUITES_FOR)
    limit: int | None = None
    data_dir: str | None = None
    training: dict[str, Any] = field(default_factory=dict)  # PlantingConfig fields (n_sentences, rank, ...)

    def validate(self) -> None:
        if self.planting not in PLANTINGS:
            raise InvalidRequestError(f"planting must be one of {list(PLANTINGS)}, not {self.planting!r}")
        if PLACEBO not in self.doses:
            raise InvalidRequestError(f"doses must include the placebo {PLACEBO} (no net association)")
        if len(set(self.doses)) < 3 or any(not 0 <= d <= 1 for d in self.doses):
            raise InvalidRequestError(f"need at least 3 distinct doses in [0, 1], got {self.doses}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise InvalidRequestError(f"seeds must be distinct and at least one, got {self.seeds}")
        if len(self.doses) * len(self.seeds) < 4:
            raise InvalidRequestError("a dose-response needs at least 4 adapters (doses x seeds)")
        if "peft" in self.backend.model_args:
            raise InvalidRequestError("the base model already has an adapter (peft=...); plant on the base model")
        self.planting_config(self.doses[0], self.seeds[0]).validate()

    @property
    def audit_suites(self) -> list[str]:
        return self.suites or SUITES_FOR[self.planting]

    def planting_config(self, dose: float, seed: int) -> PlantingConfig:
        unknown = set(self.training) - set(PlantingConfig.__dataclass_fields__) | (
            {"planting", "dose", "seed"} & set(self.training)
        )
        if unknown:
            raise InvalidRequestError(f"unknown training option(s) {sorted(unknown)}")
        return PlantingConfig(planting=self.planting, dose=dose, seed=seed, **self.training)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "backend": self.backend.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityConfig:
        return cls(**{**data, "backend": BackendSpec.from_dict(data["backend"])})


def unit_name(dose: float, seed: int) -> str:
    return f"d{dose:g}-s{seed}"


def _majorities(config: SensitivityConfig) -> dict[str, str] | None:
    if config.planting != "gender":
        return None
    from biasaudit.metrics.winogender import load_occupation_stats

    return occupation_majorities(load_occupation_stats(config.data_dir))


def plant(config: SensitivityConfig, dose: float, seed: int, folder: Path) -> Path:
    """Train (or find, when ``folder`` already holds it) the adapter for one (dose, seed)."""
    from biasaudit.models import load_model

    planting = config.planting_config(dose, seed)
    record = folder / "planting.json"
    if record.is_file() and json.loads(record.read_text())["config"] == planting.to_dict():
        return folder
    examples = planting_corpus(config.planting, dose, planting.n_sentences, seed, majorities=_majorities(config))
    spec = config.backend
    loaded = load_model(
        spec.model,
        device=spec.device,
        dtype=spec.dtype or "float32",
        trust_remote_code=spec.trust_remote_code,
        options=spec.load_options(),
    )
    return train_adapter(loaded.model, loaded.tokenizer, examples, planting).save(folder)


def audit_planted(config: SensitivityConfig, adapter: Path, out: Path) -> Path:
    """Audit the base model with ``adapter`` applied, as ``biasaudit audit ... --model_args peft=...`` would."""
    from biasaudit.audit import RunConfig, run_audit

    backend = replace(config.backend, model_args={**config.backend.model_args, "peft": str(adapter)})
    run = RunConfig(backend=backend, suites=config.audit_suites, limit=config.limit, data_dir=config.data_dir)
    run_audit(run, out)
    return out


def readings(run: Run) -> dict[str, DosePoint]:
    """Every effect a planted model's audit tested, ``suite.effect`` -> its reading (dose and seed to be set)."""
    return {
        f"{effect.suite}.{effect.effect}": DosePoint(0.0, 0, effect.estimate, tuple(effect.ci95))  # type: ignore[arg-type]
        for effect in run.effects()
    }


@dataclass
class SensitivityResult:
    config: SensitivityConfig
    responses: list[DoseResponse]
    points: dict[str, list[DosePoint]]
    skipped: dict[str, str]
    training_seconds: dict[str, float] = field(default_factory=dict)  # unit name -> seconds to train its adapter

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "responses": [r.to_dict() for r in self.responses],
            "points": {k: [asdict(p) for p in v] for k, v in self.points.items()},
            "skipped": self.skipped,
            "training_seconds": self.training_seconds,
        }


def run_sensitivity(config: SensitivityConfig, out: Path) -> SensitivityResult:
    """Plant every (dose, seed), audit each planted model, then ``summarise``: each effect's dose-response in
    ``sensitivity.json``, ``sensitivity.md`` and ``sensitivity.html`` in ``out``."""
    from biasaudit.progress import progress_bar

    config.validate()
    out.mkdir(parents=True, exist_ok=True)
    units = [(dose, seed) for dose in config.doses for seed in config.seeds]
    with progress_bar(f"planting {config.planting}", len(units)) as advance:
        for dose, seed in units:
            name = unit_name(dose, seed)
            audit_planted(config, plant(config, dose, seed, out / "adapters" / name), out / "audits" / name)
            advance()
    return summarise(config, out)


def summarise(config: SensitivityConfig, out: Path) -> SensitivityResult:
    """The dose-responses of the adapters and audits already in ``out`` (written by ``run_sensitivity``),
    re-read without training or auditing anything; writes the three summary files."""
    from biasaudit.errors import DatasetNotFoundError
    from biasaudit.jsonio import write_text_atomic
    from biasaudit.report.run import load_run
    from biasaudit.report.sensitivity_page import render_sensitivity_html

    points: dict[str, list[DosePoint]] = {}
    skipped: dict[str, str] = {}
    training: dict[str, float] = {}
    units = [(dose, seed) for dose in config.doses for seed in config.seeds]
    for dose, seed in units:
        name = unit_name(dose, seed)
        adapter, audit = out / "adapters" / name, out / "audits" / name
        if not (adapter / "planting.json").is_file() or not (audit / "results.json").is_file():
            raise DatasetNotFoundError(f"{out}: no adapter and audit for {name}; run the sensitivity check first")
        training[name] = json.loads((adapter / "planting.json").read_text())["seconds"]
        run = load_run(audit)
        skipped.update(run.skipped())
        for key, point in readings(run).items():
            points.setdefault(key, []).append(replace(point, dose=dose, seed=seed))
    responses = [dose_response(key, pts) for key, pts in sorted(points.items()) if len(pts) == len(units)]
    result = SensitivityResult(config, responses, points, skipped, training)
    write_text_atomic(out / "sensitivity.json", json.dumps(result.to_dict(), indent=2) + "\n")
    write_text_atomic(out / "sensitivity.md", markdown_table(result))
    write_text_atomic(out / "sensitivity.html", render_sensitivity_html(result))
    return result


def markdown_table(result: SensitivityResult) -> str:
    """One row per effect: Spearman ρ with dose [CI] and p, slope per dose unit [CI], minimum detectable
    bias (distance from the placebo), signal-to-noise; effects that track the dose first."""
    from biasaudit.markdown import md_cell
    from biasaudit.report.render import md_table
    from biasaudit.report.sensitivity_page import sensitivity_table, summary

    c = result.config
    lines = [f"# Sensitivity: planting `{c.planting}` on `{md_cell(c.backend.model)}`", ""]
    lines += [md_cell(summary(result)), ""]
    lines += md_table(sensitivity_table(result))
    for suite, reason in sorted(result.skipped.items()):
        lines.append(f"{md_cell(suite)} skipped: {md_cell(reason)}")
    return "\n".join(lines).rstrip() + "\n"
