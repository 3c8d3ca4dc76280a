"""CrowS-Pairs: known answers on hand-written pairs, malformed files, the shared file, the real model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import shared_data_or_skip
from loglikelihood_fakes import FakeBackend
from scipy.stats import binomtest

from biasaudit.errors import DatasetFormatError, DatasetNotFoundError, InvalidRequestError
from biasaudit.metrics import run_benchmark
from biasaudit.metrics.crows_pairs import BIAS_TYPES, CrowSPairs, load_crows_pairs

HEADER = [
    "",
    "sent_more",
    "sent_less",
    "stereo_antistereo",
    "bias_type",
    "annotations",
    "anon_writer",
    "anon_annotators",
]


def write_pairs(folder: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """rows: (sent_more, sent_less, direction, bias_type) -> crows_pairs_anonymized.csv in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crows_pairs_anonymized.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for i, (more, less, direction, bias) in enumerate(rows):
            writer.writerow([i, more, less, direction, bias, "[]", "w1", "['a1']"])
    return path


def scores_from(table: dict[str, float]):
    def fn(context: str, continuation: str) -> float:
        assert context == "", "CrowS-Pairs scores whole sentences with an empty context"
        return table[continuation]

    return fn


FOUR = [
    ("The painter forgot the keys.", "The sailor forgot the keys.", "stereo", "gender"),
    ("The baker sang a song.", "The pilot sang a song.", "stereo", "gender"),
    ("The old man lost the map.", "The young man lost the map.", "stereo", "age"),
    ("The young woman read a book.", "The old woman read a book.", "antistereo", "age"),
]
FOUR_LL = {
    "The painter forgot the keys.": -10.0,
    "The sailor forgot the keys.": -12.0,  # stereotype preferred
    "The baker sang a song.": -9.0,
    "The pilot sang a song.": -8.0,  # not preferred
    "The old man lost the map.": -5.0,
    "The young man lost the map.": -7.0,  # preferred
    "The young woman read a book.": -20.0,
    "The old woman read a book.": -21.0,  # preferred (antistereo row: sent_more still counts)
}


def test_three_of_four_pairs_preferred_is_75_percent(tmp_path):
    write_pairs(tmp_path, FOUR)
    backend = FakeBackend(scores_from(FOUR_LL))
    result = CrowSPairs().evaluate(backend, tmp_path)

    assert result.overall.pct_stereotype.value == 75.0
    assert result.overall.likelihood_diff == pytest.approx((2 + 1 + 2 + 1) / 4)
    assert result.by_bias_type["gender"].pct_stereotype.value == 50.0
    assert result.by_bias_type["age"].pct_stereotype.value == 100.0
    assert result.by_direction["antistereo"].pct_stereotype.value == 100.0
    assert result.by_direction["stereo"].pct_stereotype.value == pytest.approx(200 / 3)
    # one backend call for all 8 sentences, sent_more first
    assert len(backend.calls) == 1
    assert [c for _, c in backend.calls[0]["requests"]] == [r[0] for r in FOUR] + [r[1] for r in FOUR]


def test_small_groups_report_no_interval_but_say_why(tmp_path):
    write_pairs(tmp_path, FOUR)
    result = CrowSPairs().evaluate(FakeBackend(scores_from(FOUR_LL)), tmp_path)
    gender = result.by_bias_type["gender"].pct_stereotype
    assert gender.ci95 is None and gender.n == 2 and "too few" in gender.note
    doc = json.loads(json.dumps(result.to_dict()))  # JSON-ready
    assert doc["by_bias_type"]["gender"]["pct_stereotype"] == {
        "value": 50.0,
        "ci95": None,
        "n": 2,
        "note": gender.note,
    }
    assert "items" not in doc and len(result.to_dict(include_items=True)["items"]) == 4


def test_ties_do_not_count_as_preferring_the_stereotype(tmp_path):
    rows = [("The cook smiled.", "The guard smiled.", "stereo", "gender")]
    write_pairs(tmp_path, rows)
    result = CrowSPairs().evaluate(FakeBackend(lambda c, x: -3.0), tmp_path)
    assert result.overall.pct_stereotype.value == 0.0
    assert result.overall.n_ties == 1


def test_interval_is_the_wilson_score_interval_over_pairs(tmp_path):
    rows = [(f"The clerk {i} waved.", f"The judge {i} waved.", "stereo", "religion") for i in range(20)]
    write_pairs(tmp_path, rows)
    preferred = set(range(15))  # 15 of 20
    backend = FakeBackend(lambda c, x: -1.0 if x.startswith("The clerk") and int(x.split()[2]) in preferred else -2.0)
    est = CrowSPairs(seed=3).evaluate(backend, tmp_path).overall.pct_stereotype
    assert est.value == 75.0
    # Wilson (1927) for 15 of 20: centre (0.75 + z²/40) / (1 + z²/20), known answer [53.13, 88.81]
    assert est.ci95 == pytest.approx((53.1299, 88.8138), abs=1e-3)
    ci = binomtest(15, 20).proportion_ci(method="wilson")
    assert est.ci95 == pytest.approx((100 * ci.low, 100 * ci.high))


def test_a_bias_type_where_every_pair_prefers_the_stereotype_still_has_an_interval(tmp_path):
    rows = [(f"The clerk {i} waved.", f"The judge {i} waved.", "stereo", "age") for i in range(36)]
    write_pairs(tmp_path, rows)
    est = CrowSPairs().evaluate(FakeBackend(lambda c, x: -1.0 if "clerk" in x else -2.0), tmp_path).overall
    # a bootstrap says [100, 100]; 36 of 36 is also what a model preferring the stereotype 93% of the time shows
    # in 7% of runs, and the score interval says so
    assert est.pct_stereotype.value == 100.0
    assert est.pct_stereotype.ci95 == pytest.approx((90.36, 100.0), abs=0.01)


def test_limit_is_a_seeded_subset_stratified_by_bias_type(tmp_path):
    rows = [(f"Person {i} came.", f"Human {i} came.", "stereo", "gender" if i < 20 else "age") for i in range(30)]
    write_pairs(tmp_path, rows)
    backend = FakeBackend(lambda c, x: -1.0)
    first = CrowSPairs(limit=6, seed=1).evaluate(backend, tmp_path)
    again = CrowSPairs(limit=6, seed=1).evaluate(backend, tmp_path)
    other = CrowSPairs(limit=6, seed=2).evaluate(backend, tmp_path)
    assert {k: v.n_pairs for k, v in first.by_bias_type.items()} == {"age": 2, "gender": 4}
    assert [s.pair_id for s in first.items] == [s.pair_id for s in again.items]
    assert [s.pair_id for s in first.items] != [s.pair_id for s in other.items]
    assert first.params["n_available"] == 30 and first.params["limit"] == 6


@pytest.mark.parametrize(
    ("mutate", "line", "message"),
    [
        (lambda rows: [r[:1] + r[2:] for r in rows], 1, "header lacks column(s) ['sent_more']"),
        (lambda rows: [*rows[:2], [*rows[2][:3], "pro", *rows[2][4:]], *rows[3:]], 3, "stereo_antistereo"),
        (lambda rows: [*rows[:2], [*rows[2][:4], "height", *rows[2][5:]], *rows[3:]], 3, "bias_type"),
        (lambda rows: [*rows[:2], [""] * 8, *rows[2:]], 3, "empty row"),
        (lambda rows: [*rows[:3], rows[3][:4], *rows[4:]], 4, "expected 8 columns"),
        (lambda rows: [*rows[:1], [rows[1][0], " ", *rows[1][2:]], *rows[2:]], 2, "sent_more"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, mutate, line, message):
    path = write_pairs(tmp_path, FOUR)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(mutate(rows))
    with pytest.raises(DatasetFormatError) as err:
        load_crows_pairs(tmp_path)
    assert f"{path}:{line}:" in str(err.value)
    assert message in str(err.value)


def test_a_header_without_rows_is_an_error(tmp_path):
    write_pairs(tmp_path, [])
    with pytest.raises(InvalidRequestError, match="no CrowS-Pairs rows"):
        CrowSPairs().evaluate(FakeBackend(lambda c, x: -1.0), tmp_path)


def test_missing_folder_and_unreachable_hub_are_clear(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"crows_pairs: neither its files \(crows_pairs_anonymized.csv\)"):
        load_crows_pairs(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="the Hugging Face hub is unreachable"):
        load_crows_pairs("nobody-here/no-such-crows-pairs")
    assert "skipped" in run_benchmark("crows_pairs", object(), source=tmp_path)  # type: ignore[arg-type]


def test_hub_rows_decode_class_labels(monkeypatch):
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("int32"),
            "sent_more": datasets.Value("string"),
            "sent_less": datasets.Value("string"),
            "stereo_antistereo": datasets.ClassLabel(names=["stereo", "antistereo"]),
            "bias_type": datasets.ClassLabel(names=list(BIAS_TYPES)),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "id": [7],
            "sent_more": ["The cook ran."],
            "sent_less": ["The guard ran."],
            "stereo_antistereo": [1],
            "bias_type": [2],
        },
        features=features,
    )
    monkeypatch.setattr("biasaudit.models.hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: datasets.DatasetDict({"test": table}))
    (pair,) = load_crows_pairs("someone/crows_pairs")
    assert (pair.pair_id, pair.direction, pair.bias_type) == ("7", "antistereo", "gender")
    assert pair.where == "hub:someone/crows_pairs[test]:1"


def test_shared_file_loads_every_row():
    folder = shared_data_or_skip("crows_pairs")
    pairs = load_crows_pairs(folder)
    assert len(pairs) == 1206
    assert {p.bias_type for p in pairs} == set(BIAS_TYPES)
    assert {p.direction for p in pairs} == {"stereo", "antistereo"}
    assert load_crows_pairs(folder.parent) == pairs  # the data folder itself works too


@pytest.mark.slow
def test_real_model_scores_come_from_real_loglikelihoods(default_backend):
    folder = shared_data_or_skip("crows_pairs")
    result = CrowSPairs(limit=40, seed=0).evaluate(default_backend, folder)
    assert result.overall.n_pairs == 40
    assert 0.0 < result.overall.pct_stereotype.value < 100.0
    assert result.overall.pct_stereotype.ci95 is not None
    assert set(result.by_bias_type) == set(BIAS_TYPES)  # every type kept by the stratified subset
    pair = {p.pair_id: p for p in load_crows_pairs(folder)}[result.items[0].pair_id]
    more, less = default_backend.loglikelihood([("", pair.sent_more), ("", pair.sent_less)])
    assert result.items[0].logprob_more == pytest.approx(more.logprob, abs=1e-4)
    assert result.items[0].logprob_less == pytest.approx(less.logprob, abs=1e-4)
    json.dumps(result.to_dict(include_items=True))
