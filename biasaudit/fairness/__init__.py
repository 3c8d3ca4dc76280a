"""Group fairness of any binary classifier's saved predictions, with fairlearn's definitions and intervals.

``GroupFairness().fit(frame, label="y", pred="y_hat", groups=["sex", "race"])`` computes with fairlearn's
``MetricFrame``, per group (each combination of the ``groups`` columns: intersectional groups) and over
all rows: the count, accuracy, selection rate P(ŷ=1), TPR P(ŷ=1 | y=1), FPR P(ŷ=1 | y=0) and, with a
``score`` column, the mean score and ROC AUC; then fairlearn's between-group gaps: the demographic-parity
difference and ratio (max − min and min / max of the groups' selection rates) and the equalized-odds
difference and ratio (the worse of the TPR and FPR gaps; Hardt, Price & Srebro 2016, "Equality of
Opportunity in Supervised Learning", NeurIPS). Every value carries an interval (``intervals.py`` says
how) or a note saying why it has none; ``result_.findings()`` lists the gaps whose interval excludes 0.

* ``estimator.py``: ``GroupFairness`` (fairlearn's values, input checks);
* ``intervals.py``: the same definitions on cell counts with numpy, and the bootstrap;
* ``result.py``: ``FairnessResult`` (JSON, findings, Markdown).
"""

from biasaudit.fairness.estimator import GroupFairness
from biasaudit.fairness.intervals import GAPS, between_group_gaps, confusion_cells, rates_from_cells
from biasaudit.fairness.result import GAP_NULLS, FairnessResult, GroupMetrics

__all__ = [
    "GAPS",
    "GAP_NULLS",
    "FairnessResult",
    "GroupFairness",
    "GroupMetrics",
    "between_group_gaps",
    "confusion_cells",
    "rates_from_cells",
]
