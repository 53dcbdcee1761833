"""Choose, per call, between a Triton kernel and its plain-PyTorch reference.

A kernel runs when its input tensor lives on CUDA, or when ``TRITON_INTERPRET=1`` is set (the Triton
interpreter then runs the kernel on CPU tensors, which is how the tests exercise it without a GPU).
Everything else — a CPU-only service box — falls back to the ``*_ref`` functions. The choice is logged once
per (impl, reason) pair, never at import.

Tests force a path with ``_override_impl`` (nanochat's ``flash_attention.py`` pattern)::

    dispatch._override_impl = "torch"   # or "triton"; None restores automatic choice

This module knows nothing about which ops exist or about the model that calls them.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Literal

import torch

Impl = Literal["triton", "torch"]

logger = logging.getLogger(__name__)

# Test hook: None = automatic; "triton" or "torch" forces that path for every op.
_override_impl: Impl | None = None


def interpreter_enabled() -> bool:
    """True when the Triton interpreter is on (kernels then run on CPU tensors, slowly)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _log_choice(impl: Impl, reason: str) -> None:
    # functools.cache makes this fire once per (impl, reason) for the life of the process.
    logger.info("kernels: using %s implementation (%s)", impl, reason)


def choose_impl(x: torch.Tensor) -> Impl:
    """Pick the implementation for an op whose main input is ``x``."""
    if _override_impl is not None:
        _log_choice(_override_impl, "forced by kernels.dispatch._override_impl")
        return _override_impl
    if x.is_cuda:
        _log_choice("triton", "tensor on CUDA")
        return "triton"
    if interpreter_enabled():
        _log_choice("triton", "TRITON_INTERPRET=1, running kernels in the interpreter")
        return "triton"
    _log_choice("torch", f"tensor on {x.device.type} and TRITON_INTERPRET unset; using *_ref fallbacks")
    return "torch"
