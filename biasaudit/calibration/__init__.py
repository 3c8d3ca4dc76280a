"""In-context-learning label-bias calibration (docs/methods.md §3): calibrators, classifier, measurements."""

from biasaudit.calibration.base import NoCalibration, NotFittedError, PriorCalibrator, PriorMismatchError
from biasaudit.calibration.batch import BatchCalibrator
from biasaudit.calibration.classifier import ICLClassifier
from biasaudit.calibration.contextual import ContextualCalibrator
from biasaudit.calibration.domain_context import DomainContextCalibrator
from biasaudit.calibration.logits_processor import LabelPriorLogitsProcessor
from biasaudit.calibration.prompt import ICLPrompt

CALIBRATORS = PriorCalibrator.registry

__all__ = [
    "CALIBRATORS",
    "BatchCalibrator",
    "ContextualCalibrator",
    "DomainContextCalibrator",
    "ICLClassifier",
    "ICLPrompt",
    "LabelPriorLogitsProcessor",
    "NoCalibration",
    "NotFittedError",
    "PriorCalibrator",
    "PriorMismatchError",
]
