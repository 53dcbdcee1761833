"""kernels.layernorm: fused bias + residual + LayerNorm against its PyTorch reference."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from kernels.layernorm import add_bias_residual_layernorm, add_bias_residual_layernorm_ref

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need a CUDA GPU or TRITON_INTERPRET=1",
)
CloseCheck = Callable[..., None]  # the conftest fixture
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Both paths compute in fp32 and round once, so low-precision results differ by at most ~1 ulp.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {  # dtype → (atol, rtol)
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def _inputs(
    m: int, n: int, r: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(m * 1000 + n)
    x, residual = torch.randn(m, n, generator=gen), torch.randn(r, n, generator=gen)
    bias, weight, beta = (torch.randn(n, generator=gen) for _ in range(3))
    x, bias, residual, weight, beta = (t.to(device=device, dtype=dtype) for t in (x, bias, residual, weight, beta))
    return x, bias, residual, weight, beta


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize(
    ("m", "n", "residual_rows"),
    [(7, 97, 7), (1, 384, 1), (130, 384, 130), (33, 1, 33), (39, 64, 13), (5, 1536, 5)],
)
def test_matches_reference(
    m: int, n: int, residual_rows: int, dtype: torch.dtype, device: torch.device, check_close: CloseCheck
) -> None:
    x, bias, residual, weight, beta = _inputs(m, n, residual_rows, dtype, device)
    actual = add_bias_residual_layernorm(x, bias, residual, weight, beta, 1e-12)
    expected = add_bias_residual_layernorm_ref(x, bias, residual, weight, beta, 1e-12)
    atol, rtol = TOLERANCES[dtype]
    check_close(actual, expected, atol=atol, rtol=rtol, what=f"layernorm {m}x{n} R={residual_rows} {dtype}")


def test_no_bias_and_leading_dims(device: torch.device, check_close: CloseCheck) -> None:
    # The embedding LN's shape: x [B, S, H], positions [S, H] broadcast over B, no bias.
    x, _, residual, weight, beta = _inputs(3 * 13, 96, 13, torch.float32, device)
    x3 = x.view(3, 13, 96)
    actual = add_bias_residual_layernorm(x3, None, residual, weight, beta, 1e-5)
    expected = add_bias_residual_layernorm_ref(x3, None, residual, weight, beta, 1e-5)
    check_close(actual, expected, atol=1e-5, rtol=1e-5, what="layernorm no-bias [3, 13, 96]")


def test_reference_matches_torch_layer_norm(device: torch.device, check_close: CloseCheck) -> None:
    x, bias, residual, weight, beta = _inputs(7, 97, 7, torch.float32, device)
    expected = torch.nn.functional.layer_norm(x + bias + residual, (97,), weight, beta, 1e-12)
    actual = add_bias_residual_layernorm_ref(x, bias, residual, weight, beta, 1e-12)
    check_close(actual, expected, atol=1e-5, rtol=1e-5, what="layernorm ref vs F.layer_norm")


def test_rejects_bad_shapes(device: torch.device) -> None:
    x, bias, residual, weight, beta = _inputs(6, 8, 6, torch.float32, device)
    with pytest.raises(ValueError, match="bias"):
        add_bias_residual_layernorm(x, bias[:4], residual, weight, beta, 1e-12)
    with pytest.raises(ValueError, match="divide"):
        add_bias_residual_layernorm(x, bias, residual[:4], weight, beta, 1e-12)
    wide = torch.zeros(1, 20000, device=device)
    vec = torch.zeros(20000, device=device)
    with pytest.raises(RuntimeError, match="doesn't support"):
        add_bias_residual_layernorm(wide, vec, wide, vec, vec, 1e-12)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_large_gpu(dtype: torch.dtype, check_close: CloseCheck) -> None:
    x, bias, residual, weight, beta = _inputs(16384, 384, 16384, dtype, torch.device("cuda"))
    actual = add_bias_residual_layernorm(x, bias, residual, weight, beta, 1e-12)
    expected = add_bias_residual_layernorm_ref(x, bias, residual, weight, beta, 1e-12)
    atol, rtol = TOLERANCES[dtype]
    check_close(actual, expected, atol=atol, rtol=rtol, what=f"layernorm 16384x384 {dtype}")
