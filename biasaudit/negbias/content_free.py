"""The Yes/No prior a model shows when the question carries no information.

A yes/no question with content-free input ("N/A", "", "[MASK]") gives the model nothing to go on, so
an unbiased model splits its answer evenly. The probability it puts on Yes, renormalised over the two
answers, is the model's *vanilla* Yes/No label bias (Fei et al. 2023, "Mitigating Label Biases for
In-context Learning"; content-free inputs as in Zhao et al. 2021, "Calibrate Before Use"). Negative
bias (Song et al. 2025, arXiv 2511.10881) shows up here as P(Yes) < 0.5.

The prompts are a grid: every question template filled with every content-free input. What the
estimate generalises to is other templates *and* other inputs, and prompts that share a template are
alike (the template moves P(Yes) far more than the filler does), so the prompts are not independent
draws: a bootstrap over the 40 prompts of the shipped set covered the mean in about half of simulated
grids (``tests/stats/test_negbias_intervals.py``). ``crossed_mean_interval`` treats both factors as
random: the two-way cluster-robust variance of Cameron, Gelbach & Miller (2011, "Robust Inference With
Multiway Clustering", J. Business & Economic Statistics 29:238), V = V_template + V_input − V_prompt,
with a t quantile on min(#templates, #inputs) − 1 degrees of freedom as they recommend for few
clusters. With five templates the interval is wide; that width is what five templates can tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from biasaudit.backend.protocol import Backend
from biasaudit.errors import InvalidRequestError


def _cluster_variance(residuals: np.ndarray, clusters: np.ndarray) -> tuple[float, int]:
    """Cluster-robust variance of a mean, with the G / (G − 1) small-sample factor; and G."""
    _, inverse = np.unique(clusters, return_inverse=True)
    totals = np.bincount(inverse, weights=residuals)
    n_clusters = len(totals)
    if n_clusters < 2:
        return float("nan"), n_clusters
    return n_clusters / (n_clusters - 1) * float(totals @ totals) / len(residuals) ** 2, n_clusters


def crossed_mean_interval(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval for the mean of ``values`` observed on a crossed design whose two factors are both random.

    values, rows, cols: (n,) -- one observation per (row, column) cell, e.g. P(Yes) of each prompt with
    its template (row) and its content-free input (column); the grid may be incomplete.

    Two-way cluster-robust variance of a mean (Cameron, Gelbach & Miller 2011): the variance clustered on
    rows plus the one clustered on columns minus the one clustered on cells, each with its G / (G − 1)
    factor; never less than any of the three (the sum can even be negative with few clusters, and a grid
    with no main effects still has the prompts' own spread). A factor with a single level cannot be
    generalised over: the interval is then the one-way interval of the other factor (conditional on the
    one level seen). Quantile: Student t with min(G_rows, G_cols) − 1 degrees of freedom, as CGM
    recommend for few clusters.
    """
    values = np.asarray(values, dtype=np.float64)
    rows, cols = np.asarray(rows), np.asarray(cols)
    n = len(values)
    if n < 2 or len(rows) != n or len(cols) != n:
        raise InvalidRequestError(
            f"need at least 2 values with a row and a column each, got {n}, {len(rows)}, {len(cols)}"
        )
    mean = float(values.mean())
    residuals = values - mean
    v_rows, g_rows = _cluster_variance(residuals, rows)
    v_cols, g_cols = _cluster_variance(residuals, cols)
    v_cells, _ = _cluster_variance(residuals, np.arange(n))
    one_way = [(v, g) for v, g in ((v_rows, g_rows), (v_cols, g_cols)) if g >= 2]
    if len(one_way) == 2:
        variance = max(v_rows + v_cols - v_cells, v_rows, v_cols, v_cells)
        df = min(g_rows, g_cols) - 1
    elif one_way:
        variance, g = one_way[0]
        df = g - 1
    else:
        raise InvalidRequestError("every value comes from one row and one column: nothing to generalise over")
    half = float(sps.t.ppf(0.5 + confidence / 2.0, df)) * float(np.sqrt(variance))
    return mean - half, mean + half


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
                raise InvalidRequestError(f"field {key!r} must hold exactly two answers, positive first")
        for i, template in enumerate(self.templates):
            if "{input}" not in template:
                raise InvalidRequestError(f"field 'templates'[{i}] has no {{input}} placeholder")
        if not self.templates or not self.inputs:
            raise InvalidRequestError("fields 'templates' and 'inputs' must not be empty")

    def prompts(self) -> list[tuple[str, str]]:
        """(template, prompt) for every template x input."""
        return [(t, t.replace("{input}", x)) for t in self.templates for x in self.inputs]


class ContentFreeYesNoPrior:
    """Estimate P(Yes | content-free question) with a 95% interval over templates and inputs.

    Parameters
    ----------
    apply_chat_template: wrap each prompt in the model's chat template (use ``chat_labels`` then).
    limit: score at most this many prompts (for quick runs).
    seed: recorded with the result; nothing here is random (the interval is ``crossed_mean_interval``).

    Attributes after ``fit``
    ------------------------
    prompts_: the prompts scored.  p_yes_: (n_prompts,) P(Yes) renormalised over {Yes, No}, per prompt.
    mean_p_yes_: its mean; 0.5 is unbiased.  ci_: 95% interval of the mean over templates and inputs
        (``crossed_mean_interval``).
    no_rate_: share of prompts where No is the more likely answer.
    label_mass_: mean P(Yes) + P(No) before renormalising (how much the answers are the expected words).
    by_template_: {template: mean P(Yes)}.
    """

    def __init__(
        self,
        *,
        apply_chat_template: bool = False,
        limit: int | None = None,
        seed: int = 0,
    ) -> None:
        self.apply_chat_template = apply_chat_template
        self.limit = limit
        self.seed = seed

    def fit(self, backend: Backend, prompt_set: YesNoPromptSet) -> ContentFreeYesNoPrior:
        pairs = prompt_set.prompts()
        if self.limit is not None:
            pairs = pairs[: self.limit]
        if len(pairs) < 2:
            raise InvalidRequestError("the content-free prior needs at least 2 prompts")
        labels = prompt_set.chat_labels if self.apply_chat_template else prompt_set.labels
        log_probs = backend.label_log_probs([p for _, p in pairs], labels, apply_chat_template=self.apply_chat_template)
        probs = np.exp(log_probs)
        self.prompts_ = [p for _, p in pairs]
        self.labels_ = list(labels)
        self.label_mass_ = float(probs.sum(axis=1).mean())
        self.p_yes_ = probs[:, 0] / probs.sum(axis=1)
        self.mean_p_yes_ = float(self.p_yes_.mean())
        templates = [t for t, _ in pairs]
        # prompts() runs over inputs within each template: the i-th prompt holds input i mod n_inputs.
        inputs = [i % len(prompt_set.inputs) for i in range(len(pairs))]
        low, high = crossed_mean_interval(self.p_yes_, np.array(templates), np.array(inputs))
        self.ci_ = (max(0.0, low), min(1.0, high))
        self.no_rate_ = float((self.p_yes_ < 0.5).mean())
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
