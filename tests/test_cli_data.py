"""biasaudit data list: what each suite reads, and whether the data folder has it (fetch: test_data_sources.py)."""

from __future__ import annotations

from typer.testing import CliRunner

from biasaudit.cli import app

runner = CliRunner()


def test_data_list_with_and_without_a_data_folder(tmp_path, monkeypatch):
    from biasaudit import data_sources

    (tmp_path / "bbq").mkdir()
    (tmp_path / "bbq" / "Age.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "found" in rows["bbq"] and "missing" in rows["crows_pairs"] and "ready" in rows["yesno_prior"]

    def nowhere():
        raise data_sources.DatasetNotFoundError("none")

    monkeypatch.setattr(data_sources, "default_data_dir", nowhere)
    bare = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert bare.exit_code == 0 and "BIASAUDIT_DATA unset" in bare.output and "missing" in bare.output
    assert "biasaudit data fetch crows_pairs --to DIR" in bare.output and "hub: unreachable" in bare.output


def test_a_data_dir_that_does_not_exist_is_said(tmp_path):
    result = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path / "nope")], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "it does not exist" in result.output
