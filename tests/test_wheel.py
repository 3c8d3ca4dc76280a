"""A normal (non-editable) install works outside the checkout: the wheel carries the probes and templates."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_list_matches_the_source_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "biasaudit").rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | {"biasaudit.probe_data"}
    assert config["package-dir"] == {"biasaudit.probe_data": "probes"}


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_runs_an_audit(tmp_path, default_model_dir):
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("biasaudit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.relative_to(ROOT / "probes").as_posix() for p in (ROOT / "probes").rglob("*.yaml"))
    assert (
        sorted(n.removeprefix("biasaudit/probe_data/") for n in names if n.startswith("biasaudit/probe_data/"))
        == shipped
    )
    assert "biasaudit/report/templates/report.html.j2" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    work.mkdir()
    # The installed copy comes first on the path, so the editable install of this checkout cannot shadow it.
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    env.pop("BIASAUDIT_PROBES", None)

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where = run("-c", "import biasaudit, biasaudit.probes as p; print(biasaudit.__file__); print(p.probes_dir())")
    module, probes = where.split()
    assert Path(module).is_relative_to(site) and Path(probes) == site / "biasaudit" / "probe_data"
    assert "yesno_prior" in run("-m", "biasaudit.cli", "suites")
    run("-m", "biasaudit.cli", "audit", "default", "--suite", "yesno_prior", "--limit", "2", "--out", "run")
    assert (work / "run" / "report.html").is_file() and (work / "run" / "results.json").is_file()
