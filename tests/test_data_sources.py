"""Dataset declarations: the hub schemas map onto the authors' fields, the lookup order, fetch, and an
audit that reads a fetched data folder (built here from small datasets in the hub schemas)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict

import datasets
import pytest
from hub_schema import N_TEST, bbq_hub_row, fake_load_dataset, hub_datasets, stereoset_candidates, write_fetched
from typer.testing import CliRunner

from biasaudit import data_sources, models
from biasaudit.calibration.evaluate import TASKS
from biasaudit.calibration.examples import load_split
from biasaudit.calibration.tasks import load_task
from biasaudit.cli import app
from biasaudit.data_sources import benchmark_decls, dataset_decl, fetch, icl_decl, locate
from biasaudit.errors import DatasetFormatError, DatasetNotFoundError, InvalidRequestError
from biasaudit.metrics.bbq import load_bbq
from biasaudit.metrics.crows_pairs import load_crows_pairs
from biasaudit.metrics.stereoset import load_stereoset

runner = CliRunner()


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    return write_fetched(tmp_path_factory.mktemp("fetched"))


@pytest.fixture
def online(monkeypatch):
    """A reachable hub that serves ``hub_schema``'s datasets."""
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: True)


@pytest.fixture
def no_data_folder(monkeypatch):
    def nowhere():
        raise DatasetNotFoundError("none")

    monkeypatch.setattr(data_sources, "default_data_dir", nowhere)


def without_where(items):
    return [{k: v for k, v in asdict(it).items() if k != "where"} for it in items]


def test_every_declaration_loads_and_names_its_suites():
    decls = benchmark_decls()
    assert set(decls) == {"crows_pairs", "bbq", "stereoset", "winobias", "winogender", "occupation_gender_stats"}
    assert all(decl.suites == [name] for name, decl in decls.items() if name != "occupation_gender_stats")
    assert decls["occupation_gender_stats"].suites == ["winogender"] and decls["winogender"].hub is None
    assert decls["winobias"].hub is None and "github.com/uclanlp/corefBias" in decls["winobias"].origin
    assert {icl_decl(load_task(t)).hub_source.id for t in TASKS} == {  # type: ignore[union-attr]
        "nyu-mll/glue",
        "fancyzhx/ag_news",
        "CogComp/trec",
        "aps/super_glue",
    }


def test_fetched_crows_pairs_reads_as_the_authors_csv(fetched, tmp_path):
    hub = hub_datasets()[("jannalu/crows_pairs_multilingual", "english")]["test"]
    folder = tmp_path / "crows_pairs"
    folder.mkdir()
    with (folder / "crows_pairs_anonymized.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "sent_more", "sent_less", "stereo_antistereo", "bias_type"])
        for row in hub:
            writer.writerow([row["id"], row["sent_more"], row["sent_less"], row["stereo_antistereo"], row["bias_type"]])
    from_hub = load_crows_pairs(fetched)
    assert len(from_hub) == N_TEST and from_hub[0].where == f"{fetched / 'crows_pairs'}[test]:1"
    assert without_where(from_hub) == without_where(load_crows_pairs(tmp_path))


def test_fetched_stereoset_is_reshaped_into_the_flat_fields(fetched, tmp_path):
    folder = tmp_path / "stereoset"
    folder.mkdir()
    lines = []
    for task in ("intersentence", "intrasentence"):
        for row in hub_datasets()[("McGill-NLP/stereoset", task)]["validation"]:
            i = int(row["id"].rsplit("-", 1)[1])
            flat = {"type": task, "target": row["target"], "bias_type": row["bias_type"], "context": row["context"]}
            lines.append(json.dumps({**flat, **stereoset_candidates(task, i)}))
    (folder / "stereoset_dev_flat.jsonl").write_text("\n".join(lines) + "\n")
    from_hub = load_stereoset(fetched)
    # The hub lists candidates unrelated, stereotype, anti-stereotype: the gold labels put them back.
    assert from_hub[0].candidates == tuple(stereoset_candidates("intersentence", 0).values())
    assert without_where(from_hub) == without_where(load_stereoset(tmp_path))


def test_fetched_bbq_reads_as_the_authors_jsonl(fetched, tmp_path):
    folder = tmp_path / "bbq"
    folder.mkdir()
    (folder / "Age.jsonl").write_text("".join(json.dumps(bbq_hub_row(i)) + "\n" for i in range(N_TEST)))
    assert without_where(load_bbq(fetched)) == without_where(load_bbq(tmp_path))


def test_fetched_icl_tasks_map_labels_to_the_task_values(fetched, tmp_path):
    # sst2: GLUE's class labels negative/positive become the file's 0/1; row i has label i % 2.
    folder = tmp_path / "fewshot_cls" / "sst2"
    folder.mkdir(parents=True)
    for split, name in (("train", "stsa.binary.train"), ("validation", "stsa.binary.test")):
        rows = hub_datasets()[("nyu-mll/glue", "sst2")][split]
        (folder / name).write_text("".join(f"{r['label']} {r['sentence'].strip()}\n" for r in rows))
    task = load_task("sst2")
    for split in ("train", "test"):
        assert load_split(task, split, fetched) == load_split(task, split, tmp_path)  # type: ignore[arg-type]
    # AG News: World/Sports/Business/Sci/Tech are the file's 1..4 (label indices 0..3).
    agnews = load_split(load_task("agnews"), "test", fetched)
    assert [ex.label for ex in agnews[:5]] == [0, 1, 2, 3, 0]
    trec = load_split(load_task("trec"), "train", fetched)
    assert [load_task("trec").label_words[ex.label] for ex in trec[:3]] == ["abbreviation", "entity", "description"]
    cb = load_split(load_task("cb"), "test", fetched)
    assert cb[0].fields == {"premise": "Premise 0 (validation).", "hypothesis": "the claim 0 holds"}


def test_a_bad_hub_row_names_where_it_lies(tmp_path):
    table = hub_datasets()[("jannalu/crows_pairs_multilingual", "english")]["test"]
    broken = table.map(lambda row, i: {"bias_type": "weather" if i == 2 else row["bias_type"]}, with_indices=True)
    datasets.DatasetDict({"test": broken}).save_to_disk(str(tmp_path / "crows_pairs"))
    with pytest.raises(DatasetFormatError, match=re.escape(f"{tmp_path / 'crows_pairs'}[test]:3: field 'bias_type'")):
        load_crows_pairs(tmp_path)
    sst2 = hub_datasets()[("nyu-mll/glue", "sst2")]
    relabelled = {s: t.cast_column("label", datasets.ClassLabel(names=["bad", "good"])) for s, t in sst2.items()}
    datasets.DatasetDict(relabelled).save_to_disk(str(tmp_path / "fewshot_cls" / "sst2"))
    with pytest.raises(DatasetFormatError, match=r"sst2\[train\]:1: field 'label' is 'bad'"):
        load_split(load_task("sst2"), "train", tmp_path)


def test_lookup_order_data_dir_then_env_then_hub(fetched, tmp_path, monkeypatch, online):
    decl = dataset_decl("crows_pairs")
    monkeypatch.setenv("BIASAUDIT_DATA", str(tmp_path))  # empty: nothing found there
    assert locate(decl, fetched).kind == "fetched"  # --data-dir wins over the environment
    assert locate(decl, data_sources.data_root(None)).kind == "hub"  # env folder lacks it: the hub
    monkeypatch.setenv("BIASAUDIT_DATA", str(fetched))
    found = locate(decl, data_sources.data_root(None))
    assert (found.kind, found.path) == ("fetched", fetched / "crows_pairs")


def test_no_data_and_no_hub_says_how_to_get_it(tmp_path, no_data_folder):
    with pytest.raises(DatasetNotFoundError, match=r"biasaudit data fetch crows_pairs --to DIR.*--data-dir DIR"):
        load_crows_pairs()
    with pytest.raises(DatasetNotFoundError, match=r"github.com/uclanlp/corefBias"):
        locate(dataset_decl("winobias"), tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"biasaudit data fetch icl"):
        load_split(load_task("cb"), "test", tmp_path)


def test_rows_come_from_the_hub_when_no_folder_has_them(online, no_data_folder):
    pairs = load_crows_pairs()
    assert len(pairs) == N_TEST and pairs[0].where == "hub:jannalu/crows_pairs_multilingual:english[test]:1"
    items = load_stereoset("McGill-NLP/stereoset")  # the declared id: mapped and reshaped
    assert {it.task for it in items} == {"intersentence", "intrasentence"}
    cb = load_split(load_task("cb"), "test", None)
    assert len(cb) == N_TEST and cb[0].fields["premise"] == "Premise 0 (validation)."


def test_fetch_refuses_to_overwrite_and_needs_the_hub(fetched, tmp_path, monkeypatch):
    decl = dataset_decl("crows_pairs")
    with pytest.raises(InvalidRequestError, match="already exists and is not empty"):
        fetch(decl, fetched)
    with pytest.raises(DatasetNotFoundError, match=r"cannot be downloaded here.*--data-dir"):
        fetch(decl, tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no usable hub copy"):
        fetch(dataset_decl("winobias"), tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: True)
    (tmp_path / "crows_pairs").mkdir()
    (tmp_path / "crows_pairs" / "old.csv").write_text("x")
    assert fetch(decl, tmp_path, overwrite=True) == tmp_path / "crows_pairs"
    assert not (tmp_path / "crows_pairs" / "old.csv").exists() and len(load_crows_pairs(tmp_path)) == N_TEST


def test_cli_fetch_writes_a_data_folder_and_list_finds_it(tmp_path, online):
    out = tmp_path / "data"
    result = runner.invoke(app, ["data", "fetch", "crows_pairs", "icl", "--to", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "crows_pairs: wrote" in result.output and f"--data-dir {out}" in result.output
    listed = runner.invoke(app, ["data", "list", "--data-dir", str(out)], env={"COLUMNS": "250"})
    rows = [line for line in listed.output.splitlines() if line.count("│") > 3]
    fetched_rows = [line for line in rows if "a fetched copy" in line]
    assert {line.split("│")[2].strip() for line in fetched_rows} == {"crows_pairs", *TASKS}
    assert any("bbq" in line and "from the hub" in line for line in rows)  # not fetched, but the hub is up


def test_cli_fetch_errors_are_one_line(tmp_path, online):
    unknown = runner.invoke(app, ["data", "fetch", "nope", "--to", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown suite(s) ['nope']" in unknown.output
    by_hand = runner.invoke(app, ["data", "fetch", "winobias", "--to", str(tmp_path)], env={"COLUMNS": "300"})
    assert by_hand.exit_code == 2 and "no hub copy is declared" in by_hand.output
    nothing = runner.invoke(app, ["data", "fetch", "yesno_prior", "--to", str(tmp_path)])
    assert nothing.exit_code == 0 and "nothing to fetch" in nothing.output
    (tmp_path / "file").write_text("x")
    a_file = runner.invoke(app, ["data", "fetch", "bbq", "--to", str(tmp_path / "file")])
    assert a_file.exit_code == 2 and "is a file" in a_file.output


def test_an_audit_reads_a_fetched_data_folder(fetched, tmp_path, tiny_model, tokenizer):
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    args = ["audit", str(model_dir), "--suite", "icl,crows_pairs", "--data-dir", str(fetched), "--limit", "4"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    suites = results["suites"]
    assert set(suites) == {"icl", "crows_pairs"}
    assert not any("skipped" in entry["result"] for entry in suites.values()), suites
    assert set(suites["icl"]["result"]["tasks"]) == set(TASKS)
    assert suites["crows_pairs"]["result"]["overall"]["n_pairs"] == 4
