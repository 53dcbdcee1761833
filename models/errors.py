"""Typed errors raised by the models/ package.

Each message says what went wrong and what to do about it. The gateway maps these to HTTP errors in one place;
this module knows nothing about HTTP.
"""

from __future__ import annotations


class TriageModelError(Exception):
    """Base class for every error raised by models/."""


class EncoderLoadError(TriageModelError):
    """The tokenizer or the BERT weights could not be loaded."""


class ArtifactError(TriageModelError):
    """A trained artifact (heads, quality predictor) is missing, incomplete or incompatible."""


class DataError(TriageModelError):
    """A training or evaluation data file is missing or has the wrong shape."""


class BatcherClosedError(TriageModelError):
    """The micro-batcher is not running (call `await batcher.start()` first) or was stopped."""


class BatcherOverloadedError(TriageModelError):
    """The micro-batcher queue is full; shed load or raise `BatcherConfig.max_queue`."""
