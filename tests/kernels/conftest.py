"""Shared fixtures for the kernel tests: the device to test on and a closeness check whose failure message
carries max and mean absolute difference (as nanochat's ``tests/test_attention_fallback.py`` does)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

CloseCheck = Callable[..., None]


@pytest.fixture
def device() -> torch.device:
    """CPU under the Triton interpreter, else CUDA (modules skip themselves when neither is available)."""
    if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def _check_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    a, e = actual.double(), expected.double()
    assert torch.isfinite(a).all(), f"{what}: kernel output has non-finite values"
    diff = (a - e).abs()
    ok = diff <= atol + rtol * e.abs()
    assert bool(ok.all()), (
        f"{what}: {int((~ok).sum())}/{ok.numel()} elements outside atol={atol} rtol={rtol}; "
        f"max abs diff {diff.max().item():.3e}, mean abs diff {diff.mean().item():.3e}"
    )


@pytest.fixture
def check_close() -> CloseCheck:
    """``check_close(actual, expected, atol=..., rtol=..., what="...")``."""
    return _check_close
