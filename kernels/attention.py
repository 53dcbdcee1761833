"""Flash-attention-style multi-head self-attention over a right- or arbitrarily-padded batch.

Input is the *packed* output of the fused QKV GEMM, ``qkv: [B, S, 3·H·D]`` laid out ``[q heads | k heads |
v heads]`` with each head's D features contiguous, and output is ``[B, S, H·D]`` — exactly what the
attention-output dense layer consumes. Reading Q/K/V with strides straight out of the GEMM output saves the
``view → permute → contiguous`` round trip that a ``[B, H, S, D]`` interface needs (three [B, S, H·D] copies
in, one out, plus their launches) on every layer.

Keys are masked by ``key_mask: [B, S]`` (nonzero = attend) and key blocks at or past ``kv_len[b]`` (1 +
index of the last valid key) are never loaded, so a short row in a long padded batch costs what its length
costs. ``prepare_key_mask`` derives both from a HF ``attention_mask`` once per forward; every layer reuses
them. Query rows at or past ``kv_len[b]`` are padding and are written as zeros (finite, never NaN), and so
are fully masked rows. The softmax is online over BLOCK_N-key blocks (tutorial 06), fp32 statistics, exp2
with ``log2(e)/√D`` folded into one scale.

Why fuse: the [B, H, S, S] score matrix never touches memory; at S = 512 that is 12·512² fp32 = 12 MiB per
sequence per layer that the unfused path writes, reads for softmax, writes again and reads for ``P @ V``.

What it does not know: the model, the GEMMs around it, causal masking (BERT has none) or dropout.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

_LOG2E = 1.4426950408889634


@triton.jit  # type: ignore[untyped-decorator]  # Triton kernels take untyped pointers/scalars
def _attention_kernel(  # type: ignore[no-untyped-def]
    QKV,  # pointer to packed projections, [B, S, 3·H·D], unit stride along the last dim
    KEY_MASK,  # pointer to key validity, [B, S] int32, nonzero = attend
    KV_LEN,  # pointer to [B] int32: 1 + index of the last valid key; blocks past it are skipped
    OUT,  # pointer to the output, [B, S, H·D], unit stride along the last dim
    stride_qkv_b,  # elements between batch rows of QKV
    stride_qkv_s,  # elements between tokens of QKV
    stride_mask_b,  # elements between batch rows of KEY_MASK
    stride_o_b,  # elements between batch rows of O
    stride_o_s,  # elements between tokens of O
    S,  # padded sequence length
    H,  # number of heads
    qk_scale,  # log2(e) / sqrt(D): scores go straight into exp2
    HEAD_DIM: tl.constexpr,  # D, a power of two >= 16
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per inner-loop step
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 inputs (no TF32), "tf32" otherwise (ignored for fp16/bf16)
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    kv_len = tl.load(KV_LEN + b)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M] query positions
    offs_d = tl.arange(0, HEAD_DIM)  # [D]
    offs_n0 = tl.arange(0, BLOCK_N)  # [BLOCK_N]
    q_base = QKV + b.to(tl.int64) * stride_qkv_b + h * HEAD_DIM
    k_base = q_base + H * HEAD_DIM
    v_base = q_base + 2 * H * HEAD_DIM

    # q: [BLOCK_M, D]
    q = tl.load(q_base + offs_m[:, None] * stride_qkv_s + offs_d[None, :], mask=offs_m[:, None] < S, other=0.0)
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)  # running max (log2 units); finite so -inf - m_i = -inf
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running unnormalised output

    # A query block lying entirely in the padding does no key work at all.
    hi = tl.where(pid_m * BLOCK_M < kv_len, kv_len, 0)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0  # [BLOCK_N] key positions
        in_range = offs_n < kv_len
        # k_t: [D, BLOCK_N], loaded already transposed
        k_t = tl.load(k_base + offs_n[None, :] * stride_qkv_s + offs_d[:, None], mask=in_range[None, :], other=0.0)
        key_ok = tl.load(KEY_MASK + b * stride_mask_b + offs_n, mask=in_range, other=0) != 0
        qk = tl.dot(q, k_t, input_precision=DOT_PRECISION)  # [BLOCK_M, BLOCK_N] fp32
        qk = tl.where(key_ok[None, :], qk * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)  # rescales what was accumulated under the old max
        p = tl.exp2(qk - m_new[:, None])  # [BLOCK_M, BLOCK_N]
        l_i = l_i * alpha + tl.sum(p, 1)
        # v: [BLOCK_N, D]
        v = tl.load(v_base + offs_n[:, None] * stride_qkv_s + offs_d[None, :], mask=in_range[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)  # fully masked rows: acc is 0, keep it 0 rather than 0/0
    out = acc / l_safe[:, None]
    out = tl.where(offs_m[:, None] < kv_len, out, 0.0)  # padded query rows → zeros
    o_ptrs = OUT + b.to(tl.int64) * stride_o_b + offs_m[:, None] * stride_o_s + h * HEAD_DIM + offs_d[None, :]
    tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=offs_m[:, None] < S)


def prepare_key_mask(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """attention_mask: [B, S] (bool/int, nonzero = real token) → (key_mask [B, S] int32, kv_len [B] int32).

    Call once per forward and reuse for every layer; a handful of tiny elementwise launches, no host sync."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [B, S], got shape {tuple(attention_mask.shape)}")
    valid = attention_mask != 0
    positions = torch.arange(1, valid.shape[1] + 1, device=valid.device, dtype=torch.int32)  # [S]
    kv_len = (valid.to(torch.int32) * positions).amax(dim=1) if valid.shape[1] else valid.sum(1)
    return valid.to(torch.int32).contiguous(), kv_len.to(torch.int32).contiguous()


def _check_shapes(
    qkv: torch.Tensor, key_mask: torch.Tensor, kv_len: torch.Tensor, num_heads: int
) -> tuple[int, int, int]:
    """Return (B, S, D) or raise ValueError naming the offending argument."""
    if qkv.dim() != 3:
        raise ValueError(f"qkv must be [B, S, 3·H·D], got shape {tuple(qkv.shape)}")
    b, s, width = qkv.shape
    if num_heads <= 0 or width % (3 * num_heads) != 0:
        raise ValueError(f"qkv's last dim {width} is not 3·H·D for H={num_heads}")
    if key_mask.shape != (b, s):
        raise ValueError(f"key_mask must have shape ({b}, {s}), got {tuple(key_mask.shape)}")
    if kv_len.shape != (b,):
        raise ValueError(f"kv_len must have shape ({b},), got {tuple(kv_len.shape)}")
    return b, s, width // (3 * num_heads)


def attention(qkv: torch.Tensor, key_mask: torch.Tensor, kv_len: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Triton launcher. qkv: [B, S, 3·H·D]; key_mask: [B, S] int32; kv_len: [B] int32 → [B, S, H·D]."""
    b, s, d = _check_shapes(qkv, key_mask, kv_len, num_heads)
    if d < 16 or d > 128 or d & (d - 1):
        raise RuntimeError(f"This attention kernel supports head dims 16, 32, 64, 128; got {d}.")
    if qkv.stride(-1) != 1:
        qkv = qkv.contiguous()
    key_mask = key_mask.to(torch.int32).contiguous()
    kv_len = kv_len.to(torch.int32).contiguous()
    out = torch.empty((b, s, num_heads * d), dtype=qkv.dtype, device=qkv.device)
    if b == 0 or s == 0:
        return out
    # tl.dot needs every block dim >= 16. 64×64 suits D=32 on H100; short sequences use smaller query blocks
    # so batch 1 at 128 tokens still spreads over 4·H programs.
    block_n = max(16, min(64, triton.next_power_of_2(s)))
    block_m = max(16, min(64 if s > 128 else 32, triton.next_power_of_2(s)))
    if qkv.dtype == torch.float32:
        # IEEE fp32 dots are FMA loops, not tensor-core MMAs: on sm_90 at 32×64 ptxas (Triton 3.6) uses 255
        # registers and spills; 32×32 uses 80 and does not (tests/kernels/test_compile_sm90.py).
        block_m, block_n = min(block_m, 32), min(block_n, 32)
    grid = (triton.cdiv(s, block_m), b * num_heads)
    _attention_kernel[grid](
        qkv,
        key_mask,
        kv_len,
        out,
        qkv.stride(0),
        qkv.stride(1),
        key_mask.stride(0),
        out.stride(0),
        out.stride(1),
        s,
        num_heads,
        _LOG2E / math.sqrt(d),
        HEAD_DIM=d,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        DOT_PRECISION="ieee" if qkv.dtype == torch.float32 else "tf32",
        num_warps=4,
        enable_fp_fusion=True,  # FMA contraction, as Triton 3.6 defaults; explicit because 3.10 flips it
    )
    return out


def attention_ref(qkv: torch.Tensor, key_mask: torch.Tensor, kv_len: torch.Tensor, num_heads: int) -> torch.Tensor:
    """PyTorch reference, fp32 math, same padding contract as the kernel. Memory: reads 3·B·S·H·D, writes
    B·S·H·D, and materialises the B·H·S² score and probability matrices (written and read twice each)."""
    b, s, d = _check_shapes(qkv, key_mask, kv_len, num_heads)
    q, k, v = qkv.float().view(b, s, 3, num_heads, d).permute(2, 0, 3, 1, 4)  # each [B, H, S, D]
    positions = torch.arange(s, device=qkv.device)  # [S]
    key_ok = (key_mask != 0) & (positions[None, :] < kv_len[:, None])  # [B, S]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)  # [B, H, S, S]
    scores = scores.masked_fill(~key_ok[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows → 0, as the kernel does
    out = (probs @ v).permute(0, 2, 1, 3).reshape(b, s, num_heads * d)  # [B, S, H·D]
    query_ok = positions[None, :] < kv_len[:, None]  # [B, S]
    return torch.where(query_ok[:, :, None], out, 0.0).to(qkv.dtype)


def bench_attention(
    batch: int = 32,
    seq_len: int = 128,
    num_heads: int = 12,
    head_dim: int = 32,
    dtype: torch.dtype = torch.float16,
) -> dict[str, float]:
    """GPU-only micro-benchmark, all rows full length. FLOPs = 4·B·H·S²·D (QKᵀ and PV, 2 FLOPs per MAC, as
    tutorial 06 counts them). Returns median/p20/p80 ms and TFLOPS at the median."""
    from triton.testing import do_bench

    device = torch.device("cuda")
    qkv = torch.randn(batch, seq_len, 3 * num_heads * head_dim, device=device, dtype=dtype)
    key_mask, kv_len = prepare_key_mask(torch.ones(batch, seq_len, device=device, dtype=torch.int64))
    ms, ms_p20, ms_p80 = do_bench(lambda: attention(qkv, key_mask, kv_len, num_heads), quantiles=[0.5, 0.2, 0.8])
    flops = 4.0 * batch * num_heads * seq_len * seq_len * head_dim
    return {"ms": ms, "ms_p20": ms_p20, "ms_p80": ms_p80, "tflops": flops * 1e-12 / (ms * 1e-3)}
