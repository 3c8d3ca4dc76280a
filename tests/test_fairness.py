"""``biasaudit.fairness``: known answers by hand, equality with fairlearn, errors, JSON, findings and the CLI.

The interval coverage is checked by simulation in ``tests/stats/test_fairness_intervals.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, roc_auc_score
from typer.testing import CliRunner

from biasaudit.cli.fairness import fairness
from biasaudit.errors import ConfigError, DatasetFormatError, InvalidRequestError
from biasaudit.fairness import (
    GAPS,
    FairnessResult,
    GroupFairness,
    between_group_gaps,
    confusion_cells,
    rates_from_cells,
)
from biasaudit.fairness.intervals import auc_from_levels, gap_values, rate_estimate
from biasaudit.stats import Estimate

FAIRLEARN_GAPS = {
    "demographic_parity_difference": demographic_parity_difference,
    "demographic_parity_ratio": demographic_parity_ratio,
    "equalized_odds_difference": equalized_odds_difference,
    "equalized_odds_ratio": equalized_odds_ratio,
}
FAIRLEARN_RATES = {
    "accuracy": accuracy_score,
    "selection_rate": selection_rate,
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
}


def hand_frame() -> pd.DataFrame:
    """12 rows, 2 groups of 6. Group a: TP 2, FN 1, FP 1, TN 2. Group b: TP 1, FN 3, FP 0, TN 2."""
    return pd.DataFrame(
        {
            "group": ["a"] * 6 + ["b"] * 6,
            "label": [*(1, 1, 1, 0, 0, 0), *(1, 1, 1, 1, 0, 0)],
            "pred": [*(1, 1, 0, 1, 0, 0), *(1, 0, 0, 0, 0, 0)],
        }
    )


def simulated_frame(rng: np.random.Generator, n: int, rates: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    """``n`` rows per group; rates maps a group to (base rate, TPR, FPR)."""
    rows = []
    for group, (base, tpr, fpr) in rates.items():
        y = rng.random(n) < base
        pred = rng.random(n) < np.where(y, tpr, fpr)
        rows.append(pd.DataFrame({"group": group, "label": y.astype(int), "pred": pred.astype(int)}))
    return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------------------------------ known answers
def test_hand_computed_rates_and_gaps_equal_fairlearn():
    frame = hand_frame()
    est = GroupFairness(n_bootstrap=200).fit(frame, label="label", pred="pred", groups=["group"])
    by = {g.group["group"]: g.metrics for g in est.result_.by_group}
    # Group a: accuracy (2 + 2) / 6, selection 3 / 6, TPR 2 / 3, FPR 1 / 3.
    # Group b: accuracy (1 + 2) / 6, selection 1 / 6, TPR 1 / 4, FPR 0 / 2.
    expected = {
        "a": {"accuracy": 4 / 6, "selection_rate": 3 / 6, "tpr": 2 / 3, "fpr": 1 / 3},
        "b": {"accuracy": 3 / 6, "selection_rate": 1 / 6, "tpr": 1 / 4, "fpr": 0 / 2},
    }
    # DP difference 1/2 − 1/6 = 1/3, ratio (1/6) / (1/2) = 1/3; EO difference max(2/3 − 1/4, 1/3 − 0) = 5/12,
    # EO ratio min((1/4) / (2/3), 0 / (1/3)) = 0.
    expected_gaps = {
        "demographic_parity_difference": 1 / 3,
        "demographic_parity_ratio": 1 / 3,
        "equalized_odds_difference": 5 / 12,
        "equalized_odds_ratio": 0.0,
    }
    # All rows: 7 positives (TP 3), 5 negatives (FP 1): accuracy 7/12, selection 4/12, TPR 3/7, FPR 1/5.
    expected_overall = {"accuracy": 7 / 12, "selection_rate": 4 / 12, "tpr": 3 / 7, "fpr": 1 / 5}

    mf = MetricFrame(
        metrics=FAIRLEARN_RATES, y_true=frame["label"], y_pred=frame["pred"], sensitive_features=frame["group"]
    )
    for group, metrics in expected.items():
        for metric, value in metrics.items():
            assert by[group][metric].value == pytest.approx(value, abs=1e-12)
            assert mf.by_group.loc[group, metric] == pytest.approx(value, abs=1e-12)
    for metric, value in expected_overall.items():
        assert est.result_.overall.metrics[metric].value == pytest.approx(value, abs=1e-12)
    for gap, value in expected_gaps.items():
        fl = FAIRLEARN_GAPS[gap](frame["label"], frame["pred"], sensitive_features=frame["group"])
        assert est.result_.gaps[gap].value == pytest.approx(value, abs=1e-12)
        assert fl == pytest.approx(value, abs=1e-12)
    assert [g.count for g in est.result_.by_group] == [6, 6]
    # 6 rows per group: below the minimum for an interval; each says so
    assert all(e.ci95 is None and e.note for g in est.result_.by_group for e in g.metrics.values())
    assert "has 6 rows" in est.result_.gaps["demographic_parity_difference"].note
    assert est.result_.findings() == []


def test_numpy_definitions_equal_fairlearn_on_random_data():
    """The bootstrap's numpy statistics, on the original data, are fairlearn's values exactly."""
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n),
            "age": rng.choice(["<30", "30-60", ">60"], n, p=[0.3, 0.5, 0.2]),
            "label": rng.integers(0, 2, n),
        }
    )
    frame["pred"] = np.where(rng.random(n) < 0.7, frame["label"], 1 - frame["label"])
    frame["score"] = np.round(np.clip(0.3 * frame["pred"] + 0.4 * rng.random(n) + 0.2 * frame["label"], 0, 1), 1)
    features = frame[["sex", "age"]]
    mf = MetricFrame(metrics=FAIRLEARN_RATES, y_true=frame["label"], y_pred=frame["pred"], sensitive_features=features)
    codes = mf.by_group.index.get_indexer(pd.MultiIndex.from_frame(features))
    cells = confusion_cells(frame["label"].to_numpy(), frame["pred"].to_numpy(), codes, len(mf.by_group))
    ours = rates_from_cells(cells)
    for metric in FAIRLEARN_RATES:
        np.testing.assert_allclose(ours[metric], mf.by_group[metric].to_numpy(), rtol=1e-13, atol=0)
    values = gap_values(ours)
    for gap, fn in FAIRLEARN_GAPS.items():
        fairlearn_value = fn(frame["label"], frame["pred"], sensitive_features=features)
        np.testing.assert_allclose(values[gap], fairlearn_value, rtol=1e-13)
    # the AUC by counts per score level (ties counted half) is sklearn's
    levels = np.unique(frame["score"], return_inverse=True)[1]
    for g in range(len(mf.by_group)):
        rows = codes == g
        auc = auc_from_levels(levels[rows][None], frame["label"].to_numpy()[rows][None], int(levels.max()) + 1)
        np.testing.assert_allclose(auc[0], roc_auc_score(frame["label"][rows], frame["score"][rows]), rtol=1e-13)


def test_fit_reports_what_the_checked_procedures_give():
    """``fit`` = ``between_group_gaps`` and ``rate_estimate`` on its cells, with the same seed: what the
    simulation in tests/stats checks is what users get."""
    frame = simulated_frame(np.random.default_rng(1), 300, {"a": (0.4, 0.6, 0.1), "b": (0.5, 0.72, 0.18)})
    est = GroupFairness(seed=7).fit(frame, label="label", pred="pred", groups=["group"])
    codes = (frame["group"] == "b").to_numpy().astype(int)
    cells = confusion_cells(frame["label"], frame["pred"], codes, 2)
    direct = between_group_gaps(cells, ["group=a", "group=b"], seed=7)
    for gap in GAPS:
        assert est.gaps_[gap].ci95 == pytest.approx(direct[gap].ci95, abs=1e-12)
        assert est.gaps_[gap].value == pytest.approx(direct[gap].value, abs=1e-12)
    _, fp, fn, tp = cells[1]
    assert est.result_.by_group[1].metrics["selection_rate"] == rate_estimate(int(fp + tp), 300)
    assert est.result_.by_group[1].metrics["tpr"] == rate_estimate(int(tp), int(tp + fn), unit="actual positives")


def test_multinomial_replicates_have_the_row_bootstrap_spread():
    """Resampling a group's rows = a multinomial draw of its cells: the replicate SD of a difference of
    selection rates is the binomial standard error."""
    cells = np.array([[100, 50, 20, 30], [60, 40, 40, 60]])  # selection 0.4 of 200, 0.5 of 200
    rng = np.random.default_rng(0)
    draws = rng.multinomial(cells.sum(1), cells / cells.sum(1, keepdims=True), size=(20_000, 2))
    sel = rates_from_cells(draws)["selection_rate"]
    se = np.sqrt(0.4 * 0.6 / 200 + 0.5 * 0.5 / 200)
    assert np.std(sel[:, 0] - sel[:, 1]) == pytest.approx(se, rel=0.03)


def test_intersectional_groups_from_two_columns():
    rng = np.random.default_rng(2)
    frame = pd.concat(
        [
            simulated_frame(rng, 60, {"a": (0.5, 0.8, 0.2), "b": (0.5, 0.6, 0.3)}).assign(region=region)
            for region in ("north", "south")
        ],
        ignore_index=True,
    )
    est = GroupFairness(n_bootstrap=300).fit(frame, label="label", pred="pred", groups=["group", "region"])
    result = est.result_
    assert [g.group for g in result.by_group] == [
        {"group": "a", "region": "north"},
        {"group": "a", "region": "south"},
        {"group": "b", "region": "north"},
        {"group": "b", "region": "south"},
    ]
    assert [g.count for g in result.by_group] == [60] * 4 and result.by_group[0].name == "group=a, region=north"
    mf = MetricFrame(
        metrics=FAIRLEARN_RATES,
        y_true=frame["label"],
        y_pred=frame["pred"],
        sensitive_features=frame[["group", "region"]],
    )
    for g, row in zip(result.by_group, mf.by_group.itertuples(), strict=True):
        for metric in FAIRLEARN_RATES:
            assert g.metrics[metric].value == pytest.approx(getattr(row, metric), abs=1e-12)
    dp = demographic_parity_difference(frame["label"], frame["pred"], sensitive_features=frame[["group", "region"]])
    assert result.gaps["demographic_parity_difference"].value == pytest.approx(dp, abs=1e-12)
    assert "group=a, region=north" in result.to_markdown().replace("| a | north |", "group=a, region=north")


def test_score_column_gives_mean_score_and_auc_and_skips_a_one_class_group():
    rng = np.random.default_rng(3)
    frame = simulated_frame(rng, 200, {"a": (0.5, 0.8, 0.2), "b": (0.5, 0.6, 0.3)})
    frame["score"] = np.clip(0.5 * frame["pred"] + 0.5 * rng.random(len(frame)), 0, 1)
    frame.loc[frame["group"] == "b", "label"] = 1  # group b: positives only
    est = GroupFairness(n_bootstrap=300).fit(frame, label="label", pred="pred", groups=["group"], score="score")
    a, b = est.result_.by_group
    rows = frame["group"] == "a"
    assert a.metrics["auc"].value == pytest.approx(roc_auc_score(frame["label"][rows], frame["score"][rows]))
    assert a.metrics["auc"].ci95[0] < a.metrics["auc"].value < a.metrics["auc"].ci95[1]
    assert a.metrics["mean_score"].value == pytest.approx(frame["score"][rows].mean())
    assert b.metrics["auc"].value is None and "one class" in b.metrics["auc"].note
    # no actual negatives: FPR undefined (fairlearn says 0), and so is any equalized-odds interval
    assert b.metrics["fpr"].value is None and "no actual negatives" in b.metrics["fpr"].note
    assert est.result_.gaps["equalized_odds_difference"].ci95 is None
    assert "group=b has 0 actual negatives" in est.result_.gaps["equalized_odds_difference"].note


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (None, {"label": "truth"}, r"column\(s\) \['truth'\] not in the predictions"),
        (None, {"groups": ["sex"]}, r"\['sex'\] not in the predictions; columns are \['group', 'label', 'pred'\]"),
        (None, {"score": "p1"}, r"\['p1'\] not in"),
        (None, {"groups": []}, "at least one group column"),
        (None, {"groups": ["group", "group"]}, "group columns must differ"),
        (lambda f: f.assign(label=[0, 1, 2] * 4), {}, r"'label' must hold binary 0/1.*3 distinct value\(s\): 0, 1, 2"),
        (lambda f: f.assign(pred=["yes", "no"] * 6), {}, r"column 'pred' must hold binary.*'no', 'yes'"),
        (lambda f: f.assign(pred=[1.0, np.nan] * 6), {}, r"column 'pred' must hold binary.*nan"),
        (lambda f: f.assign(group=[None, "a"] * 6), {}, r"group column 'group' is empty in 6 row\(s\)"),
        (lambda f: f.iloc[:0], {}, "the predictions have no rows"),
        (lambda f: f.assign(s=["x"] * 12), {"score": "s"}, "score column 's' must hold a finite number"),
    ],
)
def test_clear_errors(change, kwargs, message):
    frame = hand_frame() if change is None else change(hand_frame())
    args = {"label": "label", "pred": "pred", "groups": ["group"], **kwargs}
    with pytest.raises(InvalidRequestError, match=message):
        GroupFairness().fit(frame, **args)


@pytest.mark.parametrize(
    "params", [{"n_bootstrap": 1}, {"confidence": 1.0}, {"min_group_size": 1}, {"seed": -1}, {"n_bootstrap": 2.5}]
)
def test_bad_parameters_are_refused_at_fit(params):
    est = GroupFairness(**params)  # stored unchanged, as scikit-learn does; checked in fit
    assert all(getattr(est, k) == v for k, v in params.items())
    with pytest.raises(InvalidRequestError):
        est.fit(hand_frame(), label="label", pred="pred", groups=["group"])


def test_boolean_columns_are_binary():
    frame = hand_frame().astype({"label": bool, "pred": bool})
    est = GroupFairness(n_bootstrap=50).fit(frame, label="label", pred="pred", groups="group")
    assert est.result_.gaps["demographic_parity_difference"].value == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------------ results
@pytest.fixture(scope="module")
def gap_result() -> FairnessResult:
    frame = simulated_frame(np.random.default_rng(4), 400, {"a": (0.4, 0.6, 0.1), "b": (0.5, 0.72, 0.18)})
    frame["score"] = np.clip(0.6 * frame["pred"] + 0.4 * np.random.default_rng(5).random(len(frame)), 0, 1)
    return GroupFairness().fit(frame, label="label", pred="pred", groups=["group"], score="score").result_


def test_json_round_trip(gap_result):
    data = json.loads(json.dumps(gap_result.to_dict(), allow_nan=False))
    assert FairnessResult.from_dict(data) == gap_result
    assert data["findings"] and data["gaps"]["demographic_parity_difference"]["ci95"]
    with pytest.raises(ConfigError, match="unknown"):
        FairnessResult.from_dict({**data, "extra": 1})
    with pytest.raises(ConfigError, match="gap"):
        FairnessResult.from_dict({**data, "gaps": {"made_up": data["gaps"]["demographic_parity_ratio"]}})


def test_findings_only_when_the_interval_excludes_zero(gap_result):
    findings = gap_result.findings()
    assert {f.effect for f in findings} == {"demographic_parity_difference", "equalized_odds_difference"}
    for f in findings:
        assert f.ci95[0] > 0 and f.null == 0.0 and f.suite == "fairness" and f.n == 800
        assert f.reading.startswith("The ") and f.reading.count(".") >= 2 and "group=b" in f.reading
    dp = next(f for f in findings if f.effect == "demographic_parity_difference")
    assert "selection rate is" in dp.reading and "95% CI" in dp.reading
    # an interval touching 0, or none at all, is no finding, though the first is still a tested effect
    touching = {**gap_result.gaps, "demographic_parity_difference": Estimate(0.05, (0.0, 0.1), 800),
                "equalized_odds_difference": Estimate(0.05, None, 800, "too few")}  # fmt: skip
    quiet = FairnessResult(**{**gap_result.__dict__, "gaps": touching})
    assert quiet.findings() == []
    assert [e.effect for e in quiet.effects()] == ["demographic_parity_difference"]


def test_equal_rates_give_no_finding():
    frame = simulated_frame(np.random.default_rng(6), 400, {"a": (0.4, 0.6, 0.1), "b": (0.4, 0.6, 0.1)})
    result = GroupFairness().fit(frame, label="label", pred="pred", groups=["group"]).result_
    assert result.findings() == [] and len(result.effects()) == 2
    low, high = result.gaps["demographic_parity_difference"].ci95
    assert low == 0.0 < result.gaps["demographic_parity_difference"].value < high
    ratio_low, ratio_high = result.gaps["demographic_parity_ratio"].ci95
    assert ratio_low < result.gaps["demographic_parity_ratio"].value < ratio_high == 1.0


def test_seeded_and_fast():
    import time

    frame = simulated_frame(np.random.default_rng(7), 5000, {"a": (0.4, 0.6, 0.1), "b": (0.5, 0.72, 0.18)})
    start = time.perf_counter()
    first = GroupFairness(n_bootstrap=1000, seed=3).fit(frame, label="label", pred="pred", groups=["group"]).result_
    elapsed = time.perf_counter() - start
    again = GroupFairness(n_bootstrap=1000, seed=3).fit(frame, label="label", pred="pred", groups=["group"]).result_
    other = GroupFairness(n_bootstrap=1000, seed=4).fit(frame, label="label", pred="pred", groups=["group"]).result_
    assert first == again and first.gaps != other.gaps
    assert elapsed < 5.0  # 1000 replicates of 10k rows: a multinomial draw per group, not per row


def test_markdown_section(gap_result):
    md = gap_result.to_markdown()
    assert md.startswith("## Group fairness: pred against label by group")
    assert "| group | n | accuracy | selection rate | TPR | FPR | mean score | AUC |" in md
    assert "| **all** | 800 |" in md and "### Between groups" in md and "### Findings" in md
    assert "| demographic-parity difference | " in md
    small = GroupFairness(n_bootstrap=50).fit(hand_frame(), label="label", pred="pred", groups=["group"]).result_
    small_md = small.to_markdown()
    assert "### Notes" in small_md and "group=a, TPR: only 3 actual positives" in small_md and " * |" in small_md


# ------------------------------------------------------------------------------------------ CLI
def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(fairness)
    return app


def test_cli_writes_json_and_markdown(tmp_path: Path):
    frame = simulated_frame(np.random.default_rng(8), 150, {"a": (0.4, 0.6, 0.1), "b": (0.5, 0.72, 0.18)})
    frame["region"] = np.tile(["n", "s"], len(frame) // 2)
    csv = tmp_path / "preds.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "out"
    args = [str(csv), "--group", "group", "--group", "region", "--out", str(out), "--n-bootstrap", "200"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["fairness.html", "fairness.json", "fairness.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "preds.csv"]  # nothing outside --out
    data = json.loads((out / "fairness.json").read_text())
    assert data["groups"] == ["group", "region"] and len(data["by_group"]) == 4
    assert data["settings"]["predictions"] == str(csv) and data["settings"]["n_bootstrap"] == 200
    assert FairnessResult.from_dict(data).to_markdown() == (out / "fairness.md").read_text()
    assert "between groups" in result.output and "fairness.md" in result.output
    # JSON lines read the same
    jsonl = tmp_path / "preds.jsonl"
    frame.to_json(jsonl, orient="records", lines=True)
    again = CliRunner().invoke(_app(), [str(jsonl), "-g", "group", "-g", "region", "-o", str(tmp_path / "o2"),
                                        "--n-bootstrap", "200"])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "o2" / "fairness.json").read_text())["gaps"] == data["gaps"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "sex"], "column(s) ['sex'] not in the predictions"),
        (["--group", "group", "--label", "y"], "column(s) ['y'] not in the predictions"),
        (["--group", "group", "--pred", "group"], "column 'group' must hold binary"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(tmp_path: Path, args, message):
    csv = tmp_path / "preds.csv"
    hand_frame().to_csv(csv, index=False)
    result = CliRunner().invoke(_app(), [str(csv), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_missing_and_unreadable_files(tmp_path: Path):
    result = CliRunner().invoke(_app(), [str(tmp_path / "nope.csv"), "--group", "g", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "nope.csv: no such file" in result.output
    bad = tmp_path / "preds.xlsx"
    bad.write_text("x")
    result = CliRunner().invoke(_app(), [str(bad), "--group", "g", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown format '.xlsx'" in result.output
    broken = tmp_path / "preds.jsonl"
    broken.write_text('{"a": 1}\n{not json\n')
    with pytest.raises(DatasetFormatError, match="cannot be read as JSON lines"):
        from biasaudit.cli.fairness import read_predictions

        read_predictions(broken)


def test_markdown_escapes_group_names_and_columns():
    import pandas as pd

    from biasaudit.fairness import GroupFairness

    rows = 40
    frame = pd.DataFrame(
        {
            "<b>g</b>": ["<script>alert(1)</script>"] * rows + ["b|c"] * rows,
            "y": [0, 1] * rows,
            "p": [1, 1, 0, 1] * (rows // 2),
        }
    )
    markdown = GroupFairness(n_bootstrap=50).fit(frame, label="y", pred="p", groups=["<b>g</b>"]).result_.to_markdown()
    assert "<script>" not in markdown and "<b>" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "b\\|c" in markdown


def test_the_html_page_escapes_group_names():
    import pandas as pd

    from biasaudit.fairness import GroupFairness
    from biasaudit.report.fairness_page import render_fairness_html

    rows = 40
    frame = pd.DataFrame(
        {"g": ["<script>alert(1)</script>"] * rows + ["<img src=x onerror=alert(2)>"] * rows, "y": [0, 1] * rows,
         "p": [1, 1, 0, 1] * (rows // 2)}
    )  # fmt: skip
    html = render_fairness_html(GroupFairness(n_bootstrap=50).fit(frame, label="y", pred="p", groups=["g"]).result_)
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "data:image/svg+xml;base64," in html


def test_cli_out_that_is_a_file_is_one_line(tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    result = CliRunner().invoke(_app(), [str(tmp_path / "p.csv"), "--group", "g", "--out", str(afile)])
    assert result.exit_code == 2 and "is a file; name a folder" in result.output
    assert afile.read_text() == "not a folder"
