"""kernels.gelu: fused bias + exact GELU against its PyTorch reference."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from kernels.gelu import bias_gelu, bias_gelu_ref

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need a CUDA GPU or TRITON_INTERPRET=1",
)
CloseCheck = Callable[..., None]  # the conftest fixture
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Both paths compute in fp32 and round once; erf implementations differ in the last fp32 bits.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {  # dtype → (atol, rtol)
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def _inputs(m: int, n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(m * 1000 + n)
    x = (3 * torch.randn(m, n, generator=gen)).to(device=device, dtype=dtype)  # spans GELU's curved region
    bias = torch.randn(n, generator=gen).to(device=device, dtype=dtype)
    return x, bias


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize(("m", "n"), [(7, 97), (1, 1), (130, 1536), (65, 300), (1, 129)])
def test_matches_reference(m: int, n: int, dtype: torch.dtype, device: torch.device, check_close: CloseCheck) -> None:
    x, bias = _inputs(m, n, dtype, device)
    atol, rtol = TOLERANCES[dtype]
    check_close(bias_gelu(x, bias), bias_gelu_ref(x, bias), atol=atol, rtol=rtol, what=f"gelu {m}x{n} {dtype}")


def test_reference_is_exact_erf_gelu(device: torch.device, check_close: CloseCheck) -> None:
    x, bias = _inputs(7, 97, torch.float32, device)
    h = x + bias
    expected = 0.5 * h * (1.0 + torch.erf(h / 2**0.5))
    check_close(bias_gelu_ref(x, bias), expected, atol=1e-6, rtol=1e-6, what="gelu ref vs erf formula")


def test_strided_rows_and_leading_dims(device: torch.device, check_close: CloseCheck) -> None:
    x, bias = _inputs(26, 200, torch.float32, device)
    view = x[:, :97].reshape(2, 13, 97)  # non-contiguous rows: the launcher must copy or stride correctly
    actual = bias_gelu(view, bias[:97].contiguous())
    check_close(actual, bias_gelu_ref(view, bias[:97]), atol=1e-5, rtol=1e-5, what="gelu strided [2, 13, 97]")


def test_rejects_bad_bias(device: torch.device) -> None:
    x, bias = _inputs(4, 8, torch.float32, device)
    with pytest.raises(ValueError, match="bias"):
        bias_gelu(x, bias[:3])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_large_gpu(dtype: torch.dtype, check_close: CloseCheck) -> None:
    x, bias = _inputs(16384, 1536, dtype, torch.device("cuda"))
    atol, rtol = TOLERANCES[dtype]
    check_close(bias_gelu(x, bias), bias_gelu_ref(x, bias), atol=atol, rtol=rtol, what=f"gelu 16384x1536 {dtype}")
