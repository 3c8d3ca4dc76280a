"""The Yes/No prior a model shows when the question carries no information.

A yes/no question with content-free input ("N/A", "", "[MASK]") gives the model nothing to go on, so
an unbiased model splits its answer evenly. The probability it puts on Yes, renormalised over the two
answers, is the model's *vanilla* Yes/No label bias (Fei et al. 2023, "Mitigating Label Biases for
In-context Learning"; content-free inputs as in Zhao et al. 2021, "Calibrate Before Use"). Negative
bias (Song et al. 2025, arXiv 2511.10881) shows up here as P(Yes) < 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biasaudit.backend.protocol import Backend
from biasaudit.stats import bootstrap_ci


@dataclass
class YesNoPromptSet:
    """Probe file schema: question templates with an ``{input}`` slot and content-free inputs."""

    name: str
    description: str
    labels: list[str]
    templates: list[str]
    inputs: list[str]
    chat_labels: list[str] = field(default_factory=lambda: ["Yes", "No"])

    def validate(self) -> None:
        for key in ("labels", "chat_labels"):
            if len(getattr(self, key)) != 2:
                raise ValueError(f"field {key!r} must hold exactly two answers, positive first")
        for i, template in enumerate(self.templates):
            if "{input}" not in template:
                raise ValueError(f"field 'templates'[{i}] has no {{input}} placeholder")
        if not self.templates or not self.inputs:
            raise ValueError("fields 'templates' and 'inputs' must not be empty")

    def prompts(self) -> list[tuple[str, str]]:
        """(template, prompt) for every template x input."""
        return [(t, t.replace("{input}", x)) for t in self.templates for x in self.inputs]


class ContentFreeYesNoPrior:
    """Estimate P(Yes | content-free question) with a bootstrap interval.

    Parameters
    ----------
    apply_chat_template: wrap each prompt in the model's chat template (use ``chat_labels`` then).
    limit: score at most this many prompts (for quick runs).
    n_bootstrap, seed: bootstrap resamples over prompts, and their seed.

    Attributes after ``fit``
    ------------------------
    p_yes_: (n_prompts,) P(Yes) renormalised over {Yes, No}, per prompt.
    mean_p_yes_: its mean; 0.5 is unbiased.  ci_: 95% bootstrap interval of the mean.
    no_rate_: share of prompts where No is the more likely answer.
    label_mass_: mean P(Yes) + P(No) before renormalising (how much the answers are the expected words).
    by_template_: {template: mean P(Yes)}.
    """

    def __init__(
        self,
        *,
        apply_chat_template: bool = False,
        limit: int | None = None,
        n_bootstrap: int = 1000,
        seed: int = 0,
    ) -> None:
        self.apply_chat_template = apply_chat_template
        self.limit = limit
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def fit(self, backend: Backend, prompt_set: YesNoPromptSet) -> ContentFreeYesNoPrior:
        pairs = prompt_set.prompts()
        if self.limit is not None:
            pairs = pairs[: self.limit]
        if len(pairs) < 2:
            raise ValueError("the content-free prior needs at least 2 prompts")
        labels = prompt_set.chat_labels if self.apply_chat_template else prompt_set.labels
        log_probs = backend.label_log_probs([p for _, p in pairs], labels, apply_chat_template=self.apply_chat_template)
        probs = np.exp(log_probs)
        self.labels_ = list(labels)
        self.label_mass_ = float(probs.sum(axis=1).mean())
        self.p_yes_ = probs[:, 0] / probs.sum(axis=1)
        self.mean_p_yes_ = float(self.p_yes_.mean())
        self.ci_ = bootstrap_ci(self.p_yes_, n_resamples=self.n_bootstrap, seed=self.seed)
        self.no_rate_ = float((self.p_yes_ < 0.5).mean())
        templates = [t for t, _ in pairs]
        self.by_template_ = {
            t: float(self.p_yes_[[i for i, u in enumerate(templates) if u == t]].mean())
            for t in dict.fromkeys(templates)
        }
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of the fitted estimate (with the hyper-parameters that made it)."""
        return {
            "params": {
                "apply_chat_template": self.apply_chat_template,
                "limit": self.limit,
                "n_bootstrap": self.n_bootstrap,
                "seed": self.seed,
            },
            "labels": self.labels_,
            "n_prompts": len(self.p_yes_),
            "mean_p_yes": self.mean_p_yes_,
            "ci95": list(self.ci_),
            "no_rate": self.no_rate_,
            "label_mass": self.label_mass_,
            "by_template": [{"template": t, "mean_p_yes": v} for t, v in self.by_template_.items()],
        }
