"""Fused masked mean-pool + L2 normalise (+ optional linear head + softmax), one program per sequence.

``embedding = normalize(Σ_s mask·hidden / max(Σ_s mask, 1e-9))`` is exactly sentence-transformers'
``Pooling(mean)`` followed by ``Normalize()`` (``F.normalize``, eps 1e-12) — the all-MiniLM-L6-v2 sentence
embedding. With a head, ``probs = softmax(embedding @ Wᵀ + b)`` is the router's prompt-class distribution.

Why fuse: unfused this is ~8 launches (mask expand, multiply, two sums, clamp, divide, norm, divide) plus
``addmm`` and ``softmax``, and the masked product writes a full [B, S, H] temporary. Fused, ``hidden`` is read
once and only [B, H] + [B, C] fp32 are written, in one launch; at batch 1 the launches were the whole cost.

Limits: the head's [C, H] weight tile lives in registers, so C · next_pow2(H) must be ≤ 32768 (C ≤ 64 at
H = 384) — plenty for a router's handful of classes. Outputs are always fp32; math is fp32.

What it does not know: what the classes mean, the encoder that made ``hidden``, or tokenisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

# Elements of W held in registers at once (BLOCK_C · BLOCK_H). At 32768 with 8 warps ptxas reports 152
# registers and no spills for sm_90; at 65536 it spills.
_MAX_HEAD_TILE = 32768


@triton.jit  # type: ignore[untyped-decorator]  # Triton kernels take untyped pointers/scalars
def _pool_head_kernel(  # type: ignore[no-untyped-def]
    HID,  # pointer to the encoder output, [B, S, H], unit stride along H
    MASK,  # pointer to the attention mask, [B, S] int32, nonzero = real token
    W,  # pointer to the head weight, [C, H] row-major; never read unless HAS_HEAD
    BIAS,  # pointer to the head bias, [C]; never read unless HAS_HEAD
    EMB,  # pointer to the output embedding, [B, H] fp32, contiguous
    PROBS,  # pointer to the output probabilities, [B, C] fp32, contiguous; never written unless HAS_HEAD
    stride_hid_b,  # elements between batch rows of HID
    stride_hid_s,  # elements between tokens of HID
    stride_mask_b,  # elements between batch rows of MASK
    S,  # padded sequence length
    H,  # hidden size
    C,  # number of classes
    HAS_HEAD: tl.constexpr,  # whether to apply the linear head + softmax
    BLOCK_S: tl.constexpr,  # tokens per loop step
    BLOCK_H: tl.constexpr,  # next power of two >= H
    BLOCK_C: tl.constexpr,  # next power of two >= C (1 when there is no head)
):
    row = tl.program_id(0).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)  # [BLOCK_H]
    h_ok = offs_h < H
    total = tl.zeros([BLOCK_H], dtype=tl.float32)  # Σ_s mask·hidden
    count = tl.zeros([BLOCK_S], dtype=tl.float32)  # per-lane token counts, summed after the loop
    for start_s in range(0, S, BLOCK_S):
        offs_s = start_s + tl.arange(0, BLOCK_S)  # [BLOCK_S]
        s_ok = offs_s < S
        keep = tl.load(MASK + row * stride_mask_b + offs_s, mask=s_ok, other=0) != 0
        keep_f = keep.to(tl.float32)
        # x: [BLOCK_S, BLOCK_H]; padding tokens are not even loaded
        x = tl.load(
            HID + row * stride_hid_b + offs_s[:, None] * stride_hid_s + offs_h[None, :],
            mask=keep[:, None] & h_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        total += tl.sum(x, axis=0)
        count += keep_f
    mean = total / tl.maximum(tl.sum(count, axis=0), 1e-9)
    norm = tl.sqrt(tl.sum(mean * mean, axis=0))
    emb = mean / tl.maximum(norm, 1e-12)  # [BLOCK_H], zero past H
    tl.store(EMB + row * H + offs_h, emb, mask=h_ok)

    if HAS_HEAD:
        offs_c = tl.arange(0, BLOCK_C)  # [BLOCK_C]
        c_ok = offs_c < C
        # w: [BLOCK_C, BLOCK_H]
        w = tl.load(W + offs_c[:, None] * H + offs_h[None, :], mask=c_ok[:, None] & h_ok[None, :], other=0.0)
        logits = tl.sum(w.to(tl.float32) * emb[None, :], axis=1)
        logits += tl.load(BIAS + offs_c, mask=c_ok, other=0.0).to(tl.float32)
        logits = tl.where(c_ok, logits, float("-inf"))
        e = tl.exp(logits - tl.max(logits, axis=0))
        tl.store(PROBS + row * C + offs_c, e / tl.sum(e, axis=0), mask=c_ok)


def _check_shapes(
    hidden: torch.Tensor, attention_mask: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> tuple[int, int, int, int]:
    """Return (B, S, H, C) — C is 0 without a head — or raise ValueError naming the offending argument."""
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, S, H], got shape {tuple(hidden.shape)}")
    b, s, h = hidden.shape
    if attention_mask.shape != (b, s):
        raise ValueError(f"attention_mask must have shape ({b}, {s}), got {tuple(attention_mask.shape)}")
    if (weight is None) != (bias is None):
        raise ValueError("pass both the head weight and bias, or neither")
    if weight is None or bias is None:
        return b, s, h, 0
    if weight.dim() != 2 or weight.shape[1] != h:
        raise ValueError(f"head weight must be [C, {h}], got {tuple(weight.shape)}")
    c = weight.shape[0]
    if bias.shape != (c,):
        raise ValueError(f"head bias must have shape ({c},), got {tuple(bias.shape)}")
    return b, s, h, c


def _launch(
    hidden: torch.Tensor, attention_mask: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    b, s, h, c = _check_shapes(hidden, attention_mask, weight, bias)
    block_h = triton.next_power_of_2(h)
    block_c = triton.next_power_of_2(c) if c else 1
    if c and block_c * block_h > _MAX_HEAD_TILE:
        raise RuntimeError(
            f"This pool+head kernel holds the [C, H] weight in registers and supports C·next_pow2(H) <= "
            f"{_MAX_HEAD_TILE}; got C={c}, H={h}. Apply the head with torch instead."
        )
    if hidden.stride(-1) != 1:
        hidden = hidden.contiguous()
    mask = attention_mask.to(torch.int32)
    emb = torch.empty((b, h), dtype=torch.float32, device=hidden.device)
    probs = torch.empty((b, c), dtype=torch.float32, device=hidden.device)
    if b == 0:
        return emb, probs
    if weight is not None:
        weight = weight.contiguous()
    # ~4K elements of hidden per step: 8 tokens at H=384, 16 per thread at 8 warps.
    block_s = max(1, min(triton.next_power_of_2(s), 4096 // block_h))
    _pool_head_kernel[(b,)](
        hidden,
        mask,
        weight if weight is not None else emb,  # dummy pointers, never read when HAS_HEAD is False
        bias if bias is not None else emb,
        emb,
        probs if c else emb,
        hidden.stride(0),
        hidden.stride(1),
        mask.stride(0),
        s,
        h,
        c,
        HAS_HEAD=c > 0,
        BLOCK_S=block_s,
        BLOCK_H=block_h,
        BLOCK_C=block_c,
        # 8 warps with or without the head: at 4 warps bf16 without a head spilled 8 B on sm_90 under Triton
        # 3.9's ptxas flags; at 8 it is <= 61 registers, no spills, on 3.6 and 3.9 (test_compile_sm90.py).
        num_warps=8,
        enable_fp_fusion=True,  # FMA contraction, as Triton 3.6 defaults; explicit because 3.10 flips it
    )
    return emb, probs


def mean_pool_normalize(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Triton launcher. hidden: [B, S, H], attention_mask: [B, S] → normalised mean embedding [B, H] fp32."""
    return _launch(hidden, attention_mask, None, None)[0]


def pool_head(
    hidden: torch.Tensor, attention_mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton launcher. hidden: [B, S, H], attention_mask: [B, S], weight: [C, H], bias: [C]
    → (embedding [B, H] fp32, probs [B, C] fp32)."""
    return _launch(hidden, attention_mask, weight, bias)


def mean_pool_normalize_ref(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling + Normalize, fp32. Memory: reads B·S·H, but materialises the
    [B, S, H] masked product (one more write and read) before the sum."""
    _check_shapes(hidden, attention_mask, None, None)
    keep = (attention_mask != 0).to(torch.float32).unsqueeze(-1)  # [B, S, 1]
    summed = (hidden.float() * keep).sum(dim=1)  # [B, H]
    mean = summed / keep.sum(dim=1).clamp(min=1e-9)
    return F.normalize(mean, p=2.0, dim=1, eps=1e-12)


def pool_head_ref(
    hidden: torch.Tensor, attention_mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch reference of ``pool_head``. Memory: as ``mean_pool_normalize_ref`` plus C·H + C reads and
    B·C written twice (logits, probs)."""
    _check_shapes(hidden, attention_mask, weight, bias)
    emb = mean_pool_normalize_ref(hidden, attention_mask)
    probs = torch.softmax(emb @ weight.float().t() + bias.float(), dim=-1)
    return emb, probs


def bench_pool_head(
    batch: int = 32,
    seq_len: int = 128,
    hidden_size: int = 384,
    num_classes: int = 8,
    dtype: torch.dtype = torch.float16,
) -> dict[str, float]:
    """GPU-only micro-benchmark, all rows full length. Bytes moved = B·S·H·elem + B·S·4 (mask) + (C·H + C)·4
    (head) + (B·H + B·C)·4 (fp32 outputs). Returns median/p20/p80 ms and GB/s at the median."""
    from triton.testing import do_bench

    device = torch.device("cuda")
    hidden = torch.randn(batch, seq_len, hidden_size, device=device, dtype=dtype)
    mask = torch.ones(batch, seq_len, device=device, dtype=torch.int32)
    weight = torch.randn(num_classes, hidden_size, device=device)
    bias = torch.randn(num_classes, device=device)
    ms, ms_p20, ms_p80 = do_bench(lambda: pool_head(hidden, mask, weight, bias), quantiles=[0.5, 0.2, 0.8])
    nbytes = (
        batch * seq_len * hidden_size * hidden.element_size()
        + batch * seq_len * 4
        + (num_classes * hidden_size + num_classes) * 4
        + (batch * hidden_size + batch * num_classes) * 4
    )
    return {"ms": ms, "ms_p20": ms_p20, "ms_p80": ms_p80, "gb_per_s": nbytes * 1e-9 / (ms * 1e-3)}
