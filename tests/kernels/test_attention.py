"""kernels.attention: packed-QKV masked attention against its PyTorch reference (and against SDPA)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from kernels.attention import attention, attention_ref, prepare_key_mask

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or INTERPRET),
    reason="Triton kernels need a CUDA GPU or TRITON_INTERPRET=1",
)
CloseCheck = Callable[..., None]  # the conftest fixture
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# Triton 3.9's interpreter computes tl.dot on bf16 operands wrongly (raw bits), so bf16 runs on GPU only.
needs_real_bf16_dot = pytest.mark.skipif(INTERPRET, reason="interpreter's bf16 tl.dot is wrong")

# fp32 dots run in IEEE mode (no TF32). fp16/bf16 differ from the fp32 reference by the P·V operand rounding.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {  # dtype → (atol, rtol)
    torch.float32: (1e-5, 1e-5),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (2e-2, 2e-2),
}
DTYPES = [
    torch.float32,
    torch.float16,
    pytest.param(torch.bfloat16, marks=[pytest.mark.gpu, needs_cuda, needs_real_bf16_dot]),
]


def _qkv(b: int, s: int, h: int, d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(b * 10007 + s * 101 + h * 11 + d)
    return torch.randn(b, s, 3 * h * d, generator=gen).to(device=device, dtype=dtype)  # [B, S, 3·H·D]


def _right_padded(lengths: list[int], s: int, device: torch.device) -> torch.Tensor:
    positions = torch.arange(s)
    return (positions[None, :] < torch.tensor(lengths)[:, None]).to(device=device, dtype=torch.int64)  # [B, S]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("s", "h", "d", "lengths"),
    [
        (1, 1, 32, [1]),
        (13, 2, 32, [13, 1, 7]),
        (130, 2, 32, [130, 65]),
        (64, 3, 16, [64, 33, 1]),
        (37, 1, 64, [20, 37]),
    ],
)
def test_matches_reference(
    s: int,
    h: int,
    d: int,
    lengths: list[int],
    dtype: torch.dtype,
    device: torch.device,
    check_close: CloseCheck,
) -> None:
    qkv = _qkv(len(lengths), s, h, d, dtype, device)
    key_mask, kv_len = prepare_key_mask(_right_padded(lengths, s, device))
    actual = attention(qkv, key_mask, kv_len, h)
    atol, rtol = TOLERANCES[dtype]
    what = f"attention S={s} H={h} D={d} lengths={lengths} {dtype}"
    check_close(actual, attention_ref(qkv, key_mask, kv_len, h), atol=atol, rtol=rtol, what=what)


def test_padded_query_rows_are_zero_and_finite(device: torch.device) -> None:
    lengths = [5, 1, 0]  # the last row has no real tokens at all
    qkv = _qkv(3, 13, 2, 32, torch.float32, device)
    key_mask, kv_len = prepare_key_mask(_right_padded(lengths, 13, device))
    out = attention(qkv, key_mask, kv_len, 2)
    assert torch.isfinite(out).all()
    for row, n in enumerate(lengths):
        assert bool((out[row, n:] == 0).all()), f"row {row} (length {n}): padded query rows are not zero"


def test_arbitrary_mask_left_padding_and_holes(device: torch.device, check_close: CloseCheck) -> None:
    mask = torch.ones(3, 21, dtype=torch.int64)
    mask[0, :9] = 0  # left padding
    mask[1, 3:6] = 0  # holes inside
    mask[1, 15:] = 0  # plus right padding
    mask[2, 1::2] = 0  # every other key
    key_mask, kv_len = prepare_key_mask(mask.to(device))
    assert kv_len.tolist() == [21, 15, 21]
    qkv = _qkv(3, 21, 2, 32, torch.float32, device)
    actual = attention(qkv, key_mask, kv_len, 2)
    check_close(actual, attention_ref(qkv, key_mask, kv_len, 2), atol=1e-5, rtol=1e-5, what="attention holes")


def test_reference_matches_sdpa_on_real_rows(device: torch.device, check_close: CloseCheck) -> None:
    b, s, h, d, lengths = 2, 13, 2, 32, [13, 6]
    qkv = _qkv(b, s, h, d, torch.float32, device)
    mask = _right_padded(lengths, s, device)
    key_mask, kv_len = prepare_key_mask(mask)
    q, k, v = qkv.view(b, s, 3, h, d).permute(2, 0, 3, 1, 4)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.bool()[:, None, None, :])
    sdpa = sdpa.permute(0, 2, 1, 3).reshape(b, s, h * d)
    ref = attention_ref(qkv, key_mask, kv_len, h)
    for row, n in enumerate(lengths):
        check_close(ref[row, :n], sdpa[row, :n], atol=1e-5, rtol=1e-5, what=f"ref vs SDPA row {row}")


def test_rejects_unsupported(device: torch.device) -> None:
    key_mask, kv_len = prepare_key_mask(torch.ones(1, 4, dtype=torch.int64, device=device))
    with pytest.raises(ValueError, match="3·H·D"):
        attention(torch.zeros(1, 4, 100, device=device), key_mask, kv_len, 3)
    with pytest.raises(RuntimeError, match="head dims"):
        attention(torch.zeros(1, 4, 3 * 2 * 24, device=device), key_mask, kv_len, 2)
    with pytest.raises(ValueError, match="key_mask"):
        attention(torch.zeros(1, 5, 3 * 32, device=device), key_mask, kv_len, 1)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_large_gpu(dtype: torch.dtype, check_close: CloseCheck) -> None:
    lengths = [512, 511, 300, 129, 128, 64, 17, 1]
    device = torch.device("cuda")
    qkv = _qkv(len(lengths), 512, 12, 32, dtype, device)
    key_mask, kv_len = prepare_key_mask(_right_padded(lengths, 512, device))
    atol, rtol = TOLERANCES[dtype]
    actual = attention(qkv, key_mask, kv_len, 12)
    check_close(actual, attention_ref(qkv, key_mask, kv_len, 12), atol=atol, rtol=rtol, what=f"attn 8x512 {dtype}")
