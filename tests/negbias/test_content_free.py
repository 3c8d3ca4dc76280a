"""Content-free Yes/No prior: known answers from a scripted backend, validation of the probe file."""

from __future__ import annotations

import numpy as np
import pytest

from biasaudit.negbias import ContentFreeYesNoPrior, YesNoPromptSet
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
    low, high = prior.ci_
    assert 0.25 <= low <= prior.mean_p_yes_ <= high <= 0.75
    assert prior.to_dict()["ci95"] == [low, high]


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
