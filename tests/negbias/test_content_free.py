"""Content-free Yes/No prior: known answers from a scripted backend, validation of the probe file."""

from __future__ import annotations

import numpy as np
import pytest

from biasaudit.negbias import ContentFreeYesNoPrior, YesNoPromptSet
from biasaudit.negbias.content_free import crossed_mean_interval
from biasaudit.probes import ProbeValidationError, load_probe, probe_from_mapping

PROMPT_SET = YesNoPromptSet(
    name="t",
    description="d",
    labels=[" Yes", " No"],
    templates=["Q: {input}\nA:", "{input}?"],
    inputs=["N/A", ""],
)


def table_backend(scripted, probs: dict[str, tuple[float, float]]):
    return scripted(lambda prompt, labels: np.log(probs[prompt]))


def test_known_answer(scripted):
    backend = table_backend(
        scripted, {"Q: N/A\nA:": (0.2, 0.6), "Q: \nA:": (0.1, 0.1), "N/A?": (0.3, 0.1), "?": (0.05, 0.15)}
    )
    prior = ContentFreeYesNoPrior().fit(backend, PROMPT_SET)
    np.testing.assert_allclose(prior.p_yes_, [0.25, 0.5, 0.75, 0.25])
    assert prior.mean_p_yes_ == pytest.approx(0.4375)
    assert prior.no_rate_ == pytest.approx(0.5)  # 0.5 exactly is not a No preference
    assert prior.label_mass_ == pytest.approx((0.8 + 0.2 + 0.4 + 0.2) / 4)
    assert prior.by_template_ == pytest.approx({"Q: {input}\nA:": 0.375, "{input}?": 0.5})
    # Two templates x two inputs: t on 1 degree of freedom, so the interval spans [0, 1] (clipped).
    assert prior.ci_ == (0.0, 1.0) and prior.to_dict()["ci95"] == [0.0, 1.0]


def test_crossed_interval_known_answer():
    # 3 templates x 2 inputs. Residuals about the mean 0.5: rows (-.1, -.1 | 0, .1 | .1, 0); row totals
    # -.2, .1, .1; column totals 0, 0; cells: the squares.
    values = np.array([0.4, 0.4, 0.5, 0.6, 0.6, 0.5])
    rows = np.array(["a", "a", "b", "b", "c", "c"])
    cols = np.array([0, 1, 0, 1, 0, 1])
    v_rows = 3 / 2 * (0.04 + 0.01 + 0.01) / 36
    v_cols = 0.0
    v_cells = 6 / 5 * (0.01 + 0.01 + 0 + 0.01 + 0.01 + 0) / 36
    assert 0 < v_rows + v_cols - v_cells < v_rows  # the two-way sum is below the template variance here
    variance = v_rows  # ... which is the floor
    half = 12.706204736174698 * np.sqrt(variance)  # t(0.975, df = min(3, 2) - 1 = 1)
    np.testing.assert_allclose(crossed_mean_interval(values, rows, cols), (0.5 - half, 0.5 + half))
    # No main effects at all: the row and column variances are 0 and the sum negative; the prompts' own
    # spread (the cell variance) is the floor.
    flat = np.array([0.4, 0.6, 0.6, 0.4])
    low, high = crossed_mean_interval(flat, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    v_cells = 4 / 3 * 4 * 0.01 / 16
    np.testing.assert_allclose(
        (low, high), (0.5 - 12.706204736174698 * np.sqrt(v_cells), 0.5 + 12.706204736174698 * np.sqrt(v_cells))
    )


def test_crossed_interval_with_one_template_is_the_interval_over_inputs():
    values = np.array([0.2, 0.4, 0.6])
    low, high = crossed_mean_interval(values, np.array(["t"] * 3), np.array([0, 1, 2]))
    se = np.std(values, ddof=1) / np.sqrt(3)  # one-way cluster-robust = the usual standard error
    np.testing.assert_allclose((low, high), (0.4 - 4.302652729911275 * se, 0.4 + 4.302652729911275 * se))
    with pytest.raises(ValueError, match="nothing to generalise"):
        crossed_mean_interval(values[:2], np.array(["t", "t"]), np.array([0, 0]))


def test_chat_template_uses_chat_labels_and_limit_caps_prompts(scripted):
    backend = table_backend(scripted, {"Q: N/A\nA:": (0.5, 0.5), "Q: \nA:": (0.5, 0.5), "N/A?": (0.5, 0.5)})
    ContentFreeYesNoPrior(apply_chat_template=True, limit=3).fit(backend, PROMPT_SET)
    (call,) = backend.calls
    assert len(call["prompts"]) == 3 and call["labels"] == ["Yes", "No"] and call["chat"]


def test_probe_validation_names_the_field():
    good = {
        "name": "n",
        "description": "d",
        "labels": [" Yes", " No"],
        "templates": ["{input}"],
        "inputs": ["x"],
    }
    assert probe_from_mapping(YesNoPromptSet, good, "f.yaml").labels == [" Yes", " No"]
    with pytest.raises(ProbeValidationError, match="missing required field 'inputs'"):
        probe_from_mapping(YesNoPromptSet, {k: v for k, v in good.items() if k != "inputs"}, "f.yaml")
    with pytest.raises(ProbeValidationError, match=r"f\.yaml: field 'labels'\[1\]: expected str"):
        probe_from_mapping(YesNoPromptSet, {**good, "labels": [" Yes", 3]}, "f.yaml")
    with pytest.raises(ProbeValidationError, match=r"unknown field\(s\) \['colour'\]"):
        probe_from_mapping(YesNoPromptSet, {**good, "colour": "red"}, "f.yaml")
    with pytest.raises(ProbeValidationError, match=r"no \{input\} placeholder"):
        probe_from_mapping(YesNoPromptSet, {**good, "templates": ["no slot"]}, "f.yaml")
    with pytest.raises(ProbeValidationError, match="exactly two"):
        probe_from_mapping(YesNoPromptSet, {**good, "labels": [" Yes"]}, "f.yaml")


def test_shipped_probe_loads_and_bad_files_are_reported(tmp_path):
    shipped = load_probe(YesNoPromptSet, "yesno/content_free")
    assert len(shipped.prompts()) == len(shipped.templates) * len(shipped.inputs) >= 20
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ProbeValidationError, match="not valid YAML"):
        load_probe(YesNoPromptSet, bad)
    with pytest.raises(ProbeValidationError, match="not found"):
        load_probe(YesNoPromptSet, "no/such/probe")
