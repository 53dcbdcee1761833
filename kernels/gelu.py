"""Fused bias + exact GELU: ``y = gelu(x + bias)`` with ``gelu(h) = h · ½ · (1 + erf(h / √2))``.

BERT's FFN is ``gelu(x @ W1ᵀ + b1) @ W2ᵀ + b2``; this is the epilogue of the first GEMM, with the GEMM
itself left to cuBLAS (``x @ W1ᵀ`` without bias). It uses the erf form, as HF ``hidden_act="gelu"`` does,
not the tanh approximation.

Why fuse: the FFN intermediate is the largest activation in the encoder (4× hidden: [M, 1536] for MiniLM).
Unfused, ``+ bias`` and ``gelu`` each read and write it (4·M·N element moves, two launches); fused, it is read
once and written once in one launch.

What it does not know: the GEMM that produced ``x``, or the model. Math is fp32; output has ``x``'s dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


@triton.jit  # type: ignore[untyped-decorator]  # Triton kernels take untyped pointers/scalars
def _bias_gelu_kernel(  # type: ignore[no-untyped-def]
    X,  # pointer to the GEMM output, [M, N], unit stride along N
    BIAS,  # pointer to the bias, [N]
    Y,  # pointer to the output, [M, N], unit stride along N
    M,  # number of rows (tokens)
    N,  # number of columns (FFN intermediate size)
    stride_x_row,  # elements between consecutive rows of X
    stride_y_row,  # elements between consecutive rows of Y
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_N: tl.constexpr,  # columns per program
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M]
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
    rows64 = rows.to(tl.int64)
    mask = (rows[:, None] < M) & (cols[None, :] < N)  # [BLOCK_M, BLOCK_N]
    x = tl.load(X + rows64[:, None] * stride_x_row + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    b = tl.load(BIAS + cols, mask=cols < N, other=0.0).to(tl.float32)
    h = x + b[None, :]
    y = 0.5 * h * (1.0 + tl.erf(h * 0.7071067811865476))  # 0.7071... = 1/sqrt(2)
    tl.store(Y + rows64[:, None] * stride_y_row + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


def _check_shapes(x: torch.Tensor, bias: torch.Tensor) -> tuple[int, int]:
    n = x.shape[-1]
    if bias.shape != (n,):
        raise ValueError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
    return (x.numel() // n if n else 0), n


def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Triton launcher. x: [..., N], bias: [N] → gelu(x + bias): [..., N] in x.dtype."""
    m, n = _check_shapes(x, bias)
    x2 = x.reshape(m, n)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y.reshape(x.shape)
    # 32×128 = 4096 elements per program: 16 per thread at 8 warps; N=1536 splits into 12 column tiles.
    block_n = min(triton.next_power_of_2(n), 128)
    block_m = min(triton.next_power_of_2(m), 4096 // block_n)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _bias_gelu_kernel[grid](
        x2,
        bias,
        y,
        m,
        n,
        x2.stride(0),
        y.stride(0),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        num_warps=8 if block_m * block_n >= 4096 else 4,
        enable_fp_fusion=True,  # FMA contraction, as Triton 3.6 defaults; explicit because 3.10 flips it
    )
    return y.reshape(x.shape)


def bias_gelu_ref(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """PyTorch reference, fp32 math. Memory: read MN + N, write MN — as two ops PyTorch moves ~4MN."""
    _check_shapes(x, bias)
    return F.gelu(x.float() + bias.float(), approximate="none").to(x.dtype)


def bench_bias_gelu(m: int = 4096, n: int = 1536, dtype: torch.dtype = torch.float16) -> dict[str, float]:
    """GPU-only micro-benchmark. Bytes moved = (2·M·N + N) · element size (read x and bias, write y).
    Returns median/p20/p80 ms and GB/s at the median."""
    from triton.testing import do_bench

    device = torch.device("cuda")
    x = torch.randn(m, n, device=device, dtype=dtype)
    bias = torch.randn(n, device=device, dtype=dtype)
    ms, ms_p20, ms_p80 = do_bench(lambda: bias_gelu(x, bias), quantiles=[0.5, 0.2, 0.8])
    nbytes = (2 * m * n + n) * x.element_size()
    return {"ms": ms, "ms_p20": ms_p20, "ms_p80": ms_p80, "gb_per_s": nbytes * 1e-9 / (ms * 1e-3)}
