"""Probe files: the shipped set, and $BIASAUDIT_PROBES folders that add probes or replace shipped ones."""

from __future__ import annotations

import os
import shutil

import pytest

from biasaudit.audit import SUITES
from biasaudit.biaslens.probes import load_probe_suite, shipped_suites
from biasaudit.concepts.definition import load_concept_group, shipped_groups
from biasaudit.negbias.sources import shipped_facts
from biasaudit.probes import ProbeValidationError, probe_dirs, probes_dir, resolve_probe_path


def test_without_override_the_shipped_set(monkeypatch):
    monkeypatch.delenv("BIASAUDIT_PROBES", raising=False)
    assert probe_dirs() == [probes_dir()]
    assert "gender" in shipped_suites() and "occupations" in shipped_groups()
    assert resolve_probe_path("yesno/content_free") == probes_dir() / "yesno" / "content_free.yaml"
    with pytest.raises(ProbeValidationError, match="not found"):
        resolve_probe_path("yesno/nope")


def test_an_override_folder_adds_and_replaces(monkeypatch, tmp_path):
    extra, more = tmp_path / "extra", tmp_path / "more"
    (extra / "biaslens").mkdir(parents=True)
    shutil.copy(probes_dir() / "biaslens" / "gender.yaml", extra / "biaslens" / "my_gender.yaml")  # added
    (extra / "concepts").mkdir()
    replaced = (probes_dir() / "concepts" / "occupations.yaml").read_text().replace("occupations", "occupations", 1)
    (extra / "concepts" / "occupations.yaml").write_text(replaced)  # replaces the shipped group file
    (more / "negbias").mkdir(parents=True)
    shutil.copy(probes_dir() / "negbias" / "facts.yaml", more / "negbias" / "facts.yaml")
    monkeypatch.setenv("BIASAUDIT_PROBES", os.pathsep.join([str(extra), str(more)]))
    assert probe_dirs() == [extra, more, probes_dir()]
    assert "my_gender" in shipped_suites() and "gender" in shipped_suites()
    assert load_probe_suite("my_gender").category == load_probe_suite("gender").category
    assert load_concept_group("occupations").name == "occupations"
    from biasaudit.concepts.definition import resolve_group_path

    assert resolve_group_path("occupations") == extra / "concepts" / "occupations.yaml"
    assert shipped_facts() == more / "negbias" / "facts.yaml"


def test_an_override_changes_the_resume_key(monkeypatch, tmp_path):
    monkeypatch.delenv("BIASAUDIT_PROBES", raising=False)
    before = SUITES["negbias"].inputs_digest(None)
    (tmp_path / "negbias").mkdir()
    (tmp_path / "negbias" / "facts.yaml").write_text((probes_dir() / "negbias" / "facts.yaml").read_text() + "\n")
    monkeypatch.setenv("BIASAUDIT_PROBES", str(tmp_path))
    assert SUITES["negbias"].inputs_digest(None) != before
