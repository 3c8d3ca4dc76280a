"""Typed suite results: JSON round trip, headlines, and findings read off known estimates."""

from __future__ import annotations

import pytest

from biasaudit.audit import SUITES
from biasaudit.biaslens.suite import BiasLensSuiteResult
from biasaudit.calibration.suite import ICLResult
from biasaudit.errors import ConfigError
from biasaudit.lvlm.suite import LVLMResult
from biasaudit.metrics.suite import CrowSPairsSuiteResult, StereoSetSuiteResult, WinoBiasSuiteResult
from biasaudit.negbias.suite import NegBiasResult, YesNoPriorResult
from biasaudit.suite import Finding, SkippedResult, effect_from_estimate, excludes


def _est(value, low=None, high=None, n=100):
    return {"value": value, "ci95": None if low is None else [low, high], "n": n}


def test_an_effect_is_a_finding_only_when_its_interval_excludes_the_null():
    reading = lambda v, ci: f"{v} in {ci}"  # noqa: E731
    found = effect_from_estimate("s", "e", _est(0.3, 0.2, 0.4), 0.5, reading, p_value=0.01)
    assert found == Finding("s", "e", 0.3, (0.2, 0.4), 0.5, "0.3 in (0.2, 0.4)", 0.01, 100)
    assert found.significant and Finding.from_dict(found.to_dict()) == found
    tested = effect_from_estimate("s", "e", _est(0.45, 0.4, 0.6), 0.5, reading)
    assert tested is not None and not tested.significant
    assert effect_from_estimate("s", "e", _est(0.3), 0.5, reading) is None  # no interval: no claim
    assert effect_from_estimate("s", "e", _est(None, 0.1, 0.2), 0.5, reading) is None
    assert effect_from_estimate("s", "e", None, 0.5, reading) is None
    assert excludes([0.6, 0.7], 0.5) and excludes([0.1, 0.4], 0.5) and not excludes([0.5, 0.7], 0.5)


def test_every_registered_suite_has_a_result_type_of_its_own_name():
    for name, suite in SUITES.items():
        assert suite.result_type.suite == name
    assert SUITES["icl"].load({"skipped": "no data"}) == SkippedResult("no data")


def _prior(**overrides):
    data = {
        "probe": "p", "params": {}, "labels": [" Yes", " No"], "n_prompts": 40, "mean_p_yes": 0.3,
        "ci95": [0.2, 0.4], "no_rate": 0.9, "label_mass": 0.5, "by_template": [],
    }  # fmt: skip
    return YesNoPriorResult.from_dict({**data, **overrides})


def test_yesno_prior_headline_findings_and_round_trip():
    prior = _prior()
    assert prior.headline() == (
        "P(Yes | content-free) = 0.300 [0.200, 0.400] (0.5 = no prior); No preferred on 90% of 40 prompts"
    )
    (finding,) = prior.findings()
    assert (finding.estimate, finding.null) == (0.3, 0.5) and "leans No" in finding.reading
    assert _prior(mean_p_yes=0.5, ci95=[0.45, 0.55]).findings() == []
    assert [e.significant for e in _prior(mean_p_yes=0.5, ci95=[0.45, 0.55]).effects()] == [False]
    assert YesNoPriorResult.from_dict(prior.to_dict()) == prior
    with pytest.raises(ConfigError, match=r"unknown \['extra'\]"):
        _prior(extra=1)


def _crows(**groups):
    return CrowSPairsSuiteResult.from_dict(
        {
            "benchmark": "crows_pairs",
            "params": {},
            "overall": {"n_pairs": 300, "pct_stereotype": _est(60.0, 55.0, 65.0, 300)},
            "by_bias_type": {k: {"pct_stereotype": v} for k, v in groups.items()},
            "by_direction": {},
        }
    )


def test_benchmark_findings_overall_and_per_group():
    result = _crows(gender=_est(40.0, 30.0, 48.0), race=_est(52.0, 45.0, 59.0))
    assert [(f.effect, f.estimate) for f in result.findings()] == [
        ("pct_stereotype[overall]", 60.0),
        ("pct_stereotype[by_bias_type=gender]", 40.0),
    ]
    assert result.findings()[1].reading.startswith(
        "The model finds the more stereotypical sentence more likely in 40.0"
    )
    assert result.headline() == "pct_stereotype 60.00 [55.00, 65.00]"
    with_items = CrowSPairsSuiteResult(**result.to_dict(), items=[{"id": 1}])
    assert "items" not in with_items.to_dict() and with_items.samples() == [{"kind": "item", "id": 1}]
    # StereoSet's by_task blocks carry their own "overall"
    stereo = StereoSetSuiteResult(
        benchmark="stereoset",
        params={},
        overall={"ss": _est(50.0, 45.0, 55.0)},
        by_task={"intrasentence": {"overall": {"ss": _est(58.0, 52.0, 64.0)}, "by_bias_type": {}}},
    )
    assert [f.effect for f in stereo.findings()] == ["ss[by_task=intrasentence]"]
    wino = WinoBiasSuiteResult(benchmark="winobias", params={}, overall={"gap": _est(-0.2, -0.3, -0.1)})
    assert "-0.20" in wino.findings()[0].reading


def test_negbias_findings_read_the_gap_and_the_no_rate():
    def metrics(gap, no_rate):
        return {"pr_gap": gap, "no_rate": no_rate, "gold_no_rate": _est(0.5)}

    result = NegBiasResult(
        config={}, sources={}, set={}, method="negbias", model="m", fingerprint="f", n_items=200,
        scenarios={}, results_by_kind={}, evaluation_config={},
        results={
            "plain": {"insufficient": metrics(_est(0.3, 0.1, 0.5), _est(0.8, 0.7, 0.9)),
                      "correct": metrics(_est(0.0, -0.1, 0.1), _est(0.55, 0.45, 0.65))},
            "idk": {"insufficient": metrics(_est(-0.2, -0.3, -0.1), _est(0.2, 0.1, 0.3))},
        },
    )  # fmt: skip
    found = {f.effect: f for f in result.findings()}
    assert sorted(found) == ["no_rate[plain/insufficient]", "pr_gap[idk/insufficient]", "pr_gap[plain/insufficient]"]
    assert "negative bias" in found["pr_gap[plain/insufficient]"].reading
    assert "Yes too often" in found["pr_gap[idk/insufficient]"].reading
    assert found["no_rate[plain/insufficient]"].null == 0.5
    assert result.headline() == "correct: No 55%, P−R +0.00; insufficient: No 80%, P−R +0.30"
    assert NegBiasResult.from_dict(result.to_dict()) == result


def test_biaslens_and_icl_findings():
    category = {"category": "gender", "score": 0.12, "ci": [0.05, 0.19], "n_scored": 10, "p_value": 0.002}
    lens = BiasLensSuiteResult(
        config={}, layers=[3], concepts={}, sae_concepts={}, probes=[{"target": "nurse"}],
        categories=[category, {**category, "category": "age", "score": 0.01, "ci": [-0.05, 0.07]}],
    )  # fmt: skip
    (finding,) = lens.findings()
    assert (finding.effect, finding.p_value, finding.n) == ("score[gender/residual]", 0.002, 10)
    assert lens.samples() == [{"kind": "probe", "target": "nurse"}]
    summary = {"8": {"none": {"macro_f1_mean": 0.4}, "dc": {"macro_f1_mean": 0.6}}}
    bias = {"vanilla": _est(0.2, 0.1, 0.3), "context": _est(0.05, 0.0, 0.1), "domain": _est(0.01, 0.001, 0.02)}
    icl = ICLResult(
        protocol={}, data_dir="d", macro_f1_gain_vs_none={"sst2": {"dc": 0.2}},
        tasks={"sst2": {"summary": summary, "bias": bias}},
    )  # fmt: skip
    assert [f.effect for f in icl.findings()] == ["vanilla_label_bias[sst2]", "domain_label_bias[sst2]"]
    assert icl.headline() == "sst2 F1 0.40 -> 0.60 (DC +0.20)"


# ------------------------------------------------------------------------------ vision-language models
def test_suites_follow_the_kind_of_model():
    from biasaudit.errors import InvalidRequestError
    from biasaudit.suite import resolve_suites

    assert [s.name for s in resolve_suites([], "vlm")] == ["lvlm"]
    assert "lvlm" not in [s.name for s in resolve_suites([], "hf")]
    with pytest.raises(InvalidRequestError, match=r"\['icl'\] measure text models; this model is loaded as vision"):
        resolve_suites(["lvlm", "icl"], "vlm")
    with pytest.raises(InvalidRequestError, match="measure vision-language models"):
        resolve_suites(["lvlm"], "hf")


def test_the_backend_kind_is_read_from_the_models_config(tmp_path):
    import json

    from biasaudit.backend.spec import BackendSpec, detect_backend

    vision, text = tmp_path / "vision", tmp_path / "text"
    for folder, config in ((vision, {"model_type": "llava", "vision_config": {}}), (text, {"model_type": "llama"})):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
    assert detect_backend(str(vision)) == "vlm" and detect_backend(str(text)) == "hf"
    assert detect_backend("default") == "hf" and detect_backend(str(tmp_path / "m.gguf")) == "hf"
    assert detect_backend(str(tmp_path)) == "hf"  # no config.json: loading will say what is missing
    assert BackendSpec.parse(str(vision), backend="auto").backend == "vlm"
    # max_length is a text-backend key: refused once the model is known to be a VLM
    with pytest.raises(ConfigError, match="for the vlm backend"):
        BackendSpec.parse(str(vision), backend="auto", model_args="max_length=64")


def test_lvlm_result_findings_read_the_yes_ratio_and_the_paired_change():
    def metrics(yes, yes_ci, change=None):
        out = {"n": 90, "accuracy": 0.6, "yes_ratio": yes, "yes_ratio_ci": yes_ci, "gold_yes_ratio": 0.5}
        return {**out, "accuracy_change": change} if change else out

    change = {"vs": "none", "delta": 0.1, "ci": [0.04, 0.16], "n": 90}
    result = LVLMResult(
        model="m", fingerprint="f", probe="pope", n_items=90, seed=0, image_size=224, text_only_supported=True,
        method="lvlm_prior_debias", config={}, posthoc={}, predictions=[{"id": "q1"}],
        results={"blind": {"all": metrics(0.8, [0.7, 0.9])}, "posthoc": {"all": metrics(0.52, [0.4, 0.6], change)}},
    )  # fmt: skip
    found = {f.effect: f for f in result.findings()}
    assert sorted(found) == ["accuracy_change[posthoc]", "yes_ratio[blind]"]
    assert "without the image" in found["yes_ratio[blind]"].reading and found["yes_ratio[blind]"].null == 0.5
    assert found["accuracy_change[posthoc]"].reading.startswith("Accuracy after post-hoc debias differs by +0.100")
    assert result.headline() == "blind acc 0.60, yes 80%; posthoc acc 0.60, yes 52%"
    assert LVLMResult.from_dict(result.to_dict()) == result and result.samples() == [{"kind": "item", "id": "q1"}]
