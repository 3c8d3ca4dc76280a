"""Vision-language models (docs/methods.md §5): how much answers follow the language prior, and two mitigations.

- ``probe``: procedural POPE-style yes/no and multiple-choice probes, ground truth known by construction;
- ``posthoc.PostHocDebias``: p_cal ∝ diag(p_ref)^-1 p over the answer labels (Zhang et al. 2024);
- ``sampling.DebiasSamplingProcessor``: debiased decoding as a transformers ``LogitsProcessor`` (VDD / VCD);
- ``evaluate.LVLMEvaluator``: blind accuracy, yes-ratio, accuracy/F1 with and without each mitigation.

The model side (images, reference inputs, batching) is ``biasaudit.backend.vlm.VLMBackend``.
"""

from biasaudit.lvlm.evaluate import LVLMEvalConfig, LVLMEvaluator
from biasaudit.lvlm.posthoc import PostHocDebias
from biasaudit.lvlm.probe import ProbeItem, load_probe, make_choice_probe, make_pope_probe, make_probe, save_probe
from biasaudit.lvlm.sampling import DebiasSamplingProcessor

__all__ = [
    "DebiasSamplingProcessor",
    "LVLMEvalConfig",
    "LVLMEvaluator",
    "PostHocDebias",
    "ProbeItem",
    "load_probe",
    "make_choice_probe",
    "make_pope_probe",
    "make_probe",
    "save_probe",
]
