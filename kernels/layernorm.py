"""Fused bias + residual + LayerNorm: ``y = LN(x + bias + residual) * weight + beta``.

This is the BERT "Add & Norm" step that follows both the attention-output dense layer and the FFN-output dense
layer, and (with ``bias`` = token-type row 0 and ``residual`` = position embeddings) the embedding sum.

Why fuse: unfused, PyTorch reads and writes the [M, N] activation three times (``+ bias``,
``+ residual``, ``layer_norm``) and pays three launches. Fused, we read ``x`` and ``residual`` once and write
``y`` once, in one launch; at MiniLM sizes (N = 384) the op is pure memory traffic plus launch latency, so
that is the whole cost.

``residual`` may have fewer rows than ``x``: row ``m`` of ``x`` adds row ``m % R`` of a residual with ``R``
rows. That lets the embedding step broadcast ``position_embeddings[:S]`` over the batch without
materialising it.

What it does not know: anything about attention, GEMMs or the model. Statistics are always fp32; the output
has ``x``'s dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

# One row lives in registers; past 64 KiB per row the tutorial's one-row-per-program design stops fitting.
_MAX_ROW_BYTES = 65536


@triton.jit  # type: ignore[untyped-decorator]  # Triton kernels take untyped pointers/scalars
def _add_bias_residual_layernorm_kernel(  # type: ignore[no-untyped-def]
    X,  # pointer to the projection output, [M, N], unit stride along N
    BIAS,  # pointer to the projection bias, [N]; never read unless HAS_BIAS
    RES,  # pointer to the residual, [R, N]; row m of X adds row m % R
    W,  # pointer to the LayerNorm weight (gamma), [N]
    B,  # pointer to the LayerNorm bias (beta), [N]
    Y,  # pointer to the output, [M, N]
    stride_x_row,  # elements between consecutive rows of X
    stride_res_row,  # elements between consecutive rows of RES
    stride_y_row,  # elements between consecutive rows of Y
    res_rows,  # R, the number of residual rows (R divides M)
    N,  # number of columns (hidden size)
    eps,  # LayerNorm epsilon, added to the variance
    HAS_BIAS: tl.constexpr,  # whether BIAS is added
    BLOCK_N: tl.constexpr,  # next power of two >= N; one row per program
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    # h: [BLOCK_N] fp32 = x + bias + residual for this row
    h = tl.load(X + row * stride_x_row + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        h += tl.load(BIAS + cols, mask=mask, other=0.0).to(tl.float32)
    res_row = row % res_rows
    h += tl.load(RES + res_row * stride_res_row + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(h, axis=0) / N
    centered = tl.where(mask, h - mean, 0.0)
    var = tl.sum(centered * centered, axis=0) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    y = centered * rstd * w + b
    tl.store(Y + row * stride_y_row + cols, y.to(Y.dtype.element_ty), mask=mask)


def _check_shapes(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    beta: torch.Tensor,
) -> tuple[int, int, int]:
    """Return (M, N, R) or raise ValueError naming the offending argument."""
    n = x.shape[-1]
    m = x.numel() // n if n else 0
    for name, vec in (("bias", bias), ("weight", weight), ("beta", beta)):
        if vec is not None and vec.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(vec.shape)}")
    if residual.shape[-1] != n:
        raise ValueError(f"residual's last dim {residual.shape[-1]} != x's last dim {n}")
    r = residual.numel() // n if n else 0
    if r == 0 or m % r != 0:
        raise ValueError(f"residual has {r} rows, which must divide x's {m} rows")
    return m, n, r


def add_bias_residual_layernorm(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Triton launcher. x: [..., N]; residual: [..., N] with R rows, R | M; returns [..., N] in x.dtype."""
    m, n, r = _check_shapes(x, bias, residual, weight, beta)
    if n * x.element_size() > _MAX_ROW_BYTES:
        raise RuntimeError(f"This layer norm doesn't support rows over {_MAX_ROW_BYTES} bytes (N={n}).")
    x2 = x.reshape(m, n)
    res2 = residual.reshape(r, n)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if res2.stride(-1) != 1:
        res2 = res2.contiguous()
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0:
        return y.reshape(x.shape)
    block_n = triton.next_power_of_2(n)
    num_warps = min(max(block_n // 256, 1), 8)
    _add_bias_residual_layernorm_kernel[(m,)](
        x2,
        bias if bias is not None else x2,  # dummy pointer, never read when HAS_BIAS is False
        res2,
        weight,
        beta,
        y,
        x2.stride(0),
        res2.stride(0),
        y.stride(0),
        r,
        n,
        eps,
        HAS_BIAS=bias is not None,
        BLOCK_N=block_n,
        num_warps=num_warps,
        enable_fp_fusion=True,  # FMA contraction, as Triton 3.6 defaults; explicit because 3.10 flips it
    )
    return y.reshape(x.shape)


def add_bias_residual_layernorm_ref(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """PyTorch reference, fp32 math. Memory: read 2MN (x, residual) + 3N, write MN — but as 3 ops PyTorch
    actually moves ~7MN elements (each add reads 2 and writes 1, layer_norm reads 1 and writes 1)."""
    _, n, r = _check_shapes(x, bias, residual, weight, beta)
    h = x.reshape(-1, r, n).float() + residual.reshape(r, n).float()
    if bias is not None:
        h = h + bias.float()
    y = F.layer_norm(h, (n,), weight.float(), beta.float(), eps)
    return y.to(x.dtype).reshape(x.shape)


def bench_add_bias_residual_layernorm(
    m: int = 4096, n: int = 384, dtype: torch.dtype = torch.float16
) -> dict[str, float]:
    """GPU-only micro-benchmark. Bytes moved = (3·M·N + 4·N) · element size (read x, residual, bias, gamma,
    beta; write y). Returns median/p20/p80 ms and GB/s at the median."""
    from triton.testing import do_bench

    device = torch.device("cuda")
    x = torch.randn(m, n, device=device, dtype=dtype)
    res = torch.randn_like(x)
    bias, weight, beta = (torch.randn(n, device=device, dtype=dtype) for _ in range(3))
    ms, ms_p20, ms_p80 = do_bench(
        lambda: add_bias_residual_layernorm(x, bias, res, weight, beta, 1e-12), quantiles=[0.5, 0.2, 0.8]
    )
    nbytes = (3 * m * n + 4 * n) * x.element_size()
    return {"ms": ms, "ms_p20": ms_p20, "ms_p80": ms_p80, "gb_per_s": nbytes * 1e-9 / (ms * 1e-3)}
