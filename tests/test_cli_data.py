"""biasaudit data list: what each suite reads, and whether the data folder has it."""

from __future__ import annotations

from typer.testing import CliRunner

from biasaudit.cli import app
from biasaudit.cli.data import missing_files

runner = CliRunner()


def test_missing_files_per_dataset(tmp_path):
    assert missing_files("crows_pairs", tmp_path) == ["crows_pairs/"]
    (tmp_path / "crows_pairs").mkdir()
    assert missing_files("crows_pairs", tmp_path) == ["crows_pairs/"]  # an empty folder is not data
    (tmp_path / "crows_pairs" / "crows_pairs_anonymized.csv").write_text("x")
    assert missing_files("crows_pairs", tmp_path) == []
    needed = missing_files("fewshot_cls", tmp_path)
    assert "fewshot_cls/sst2/stsa.binary.train" in needed and len(needed) >= 8
    (tmp_path / "fewshot_cls" / "sst2").mkdir(parents=True)
    (tmp_path / "fewshot_cls" / "sst2" / "stsa.binary.train").write_text("1 fine\n")
    assert "fewshot_cls/sst2/stsa.binary.train" not in missing_files("fewshot_cls", tmp_path)


def test_data_list_with_and_without_a_data_folder(tmp_path, monkeypatch):
    from biasaudit import datasets

    (tmp_path / "bbq").mkdir()
    (tmp_path / "bbq" / "Age.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "found" in rows["bbq"] and "missing" in rows["crows_pairs"] and "ready" in rows["yesno_prior"]

    def nowhere():
        raise datasets.DatasetNotFoundError("none")

    monkeypatch.setattr(datasets, "default_data_dir", nowhere)
    bare = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert bare.exit_code == 0 and "BIASAUDIT_DATA unset" in bare.output and "missing" in bare.output


def test_a_data_dir_that_does_not_exist_is_said(tmp_path):
    result = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path / "nope")], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "it does not exist" in result.output
