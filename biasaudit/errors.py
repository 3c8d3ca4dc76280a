"""Typed errors that speak to the user: each says what went wrong and how to fix it."""

from __future__ import annotations


class BiasAuditError(Exception):
    """Base class of every error biasaudit raises on purpose."""


class ModelNotFoundError(BiasAuditError, FileNotFoundError):
    """A model spec (path, .gguf file, hub id) could not be resolved to weights."""


class HubUnreachableError(ModelNotFoundError):
    """A hub id is not cached locally and the hub cannot be reached."""


class InvalidRequestError(BiasAuditError, ValueError):
    """A request or argument is malformed: an empty list, an empty label, a bad layer index, a parameter
    out of range, inputs of mismatched shapes. The CLI reports it in one line and exits with code 2."""


class LabelCollisionError(InvalidRequestError):
    """Two labels share their first token, so first-token scoring cannot tell them apart."""


class LabelTruncationWarning(UserWarning):
    """First-token scoring met a label of several tokens: only its first token was scored."""


class LayerOutOfRangeError(InvalidRequestError, IndexError):
    """A layer index outside [0, n_layers]."""


class TooFewExamplesError(BiasAuditError, ValueError):
    """A concept (or the generic pool) has too few usable examples after filtering to fit a CAV."""


class NotAVisionLanguageModelError(ModelNotFoundError, ValueError):
    """A model that cannot take images (no image-text-to-text class, or its processor has no image processor)."""


class ImageReadError(BiasAuditError, ValueError):
    """An image file that is missing, truncated or not an image."""


class ConfigError(InvalidRequestError):
    """A configuration names an unknown key or gives a key a value of the wrong kind."""


class MissingDependencyError(BiasAuditError, ImportError):
    """An optional package a requested feature needs is not installed; the message names the install command."""


class DatasetFormatError(BiasAuditError, ValueError):
    """A row of a dataset file cannot be parsed; the message names the file and line."""


class DatasetNotFoundError(BiasAuditError, FileNotFoundError):
    """The data folder or a dataset file in it does not exist."""


class NotFittedError(BiasAuditError, AttributeError):
    """A calibrator or estimator was used before ``fit``."""
