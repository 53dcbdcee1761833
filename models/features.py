"""Cheap surface features of a prompt that a mean-pooled English MiniLM embedding blurs.

all-MiniLM-L6-v2 was trained on English: a Russian or Chinese prompt becomes a bag of sub-word fragments whose
mean vector can land near code, and "is this prompt non-English" is exactly what the
`translation_multilingual` category means. Length and symbol statistics also separate code, maths and
passage-plus-question templates. Every feature is in [0, 1] and computed on the character-bounded text
(models/encoder.bound_chars), so cost is bounded for any prompt length. This module knows nothing about
tokenizers or models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "non_ascii_letter_share",  # letters outside ASCII / all letters: non-English scripts, accents
    "cjk_share",  # CJK ideographs + kana + hangul / all letters
    "cyrillic_share",  # Cyrillic / all letters
    "digit_share",  # digits / characters
    "code_symbol_share",  # {}[]();=<>_#$\\`|&*/ / characters
    "newline_share",  # newlines / characters, x10, capped at 1
    "log_chars",  # log(1 + characters) / log(1 + 100k), capped at 1
    "question_mark",  # 1 if the prompt contains "?"
)
N_FEATURES = len(FEATURE_NAMES)
_CODE_SYMBOLS = frozenset("{}[]();=<>_#$\\`|&*/")


def _one(text: str, n_chars_full: int) -> list[float]:
    n = max(len(text), 1)
    letters = cjk = cyr = non_ascii = digits = code = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            o = ord(ch)
            if o >= 128:
                non_ascii += 1
                if 0x4E00 <= o <= 0x9FFF or 0x3040 <= o <= 0x30FF or 0xAC00 <= o <= 0xD7AF or 0x3400 <= o <= 0x4DBF:
                    cjk += 1
                elif 0x0400 <= o <= 0x04FF:
                    cyr += 1
        elif ch.isdigit():
            digits += 1
        elif ch in _CODE_SYMBOLS:
            code += 1
    la = max(letters, 1)
    return [
        non_ascii / la,
        cjk / la,
        cyr / la,
        digits / n,
        code / n,
        min(1.0, 10 * text.count("\n") / n),
        min(1.0, math.log1p(n_chars_full) / math.log1p(100_000)),
        float("?" in text),
    ]


def surface_features(texts: Sequence[str], max_chars: int = 2048) -> np.ndarray:
    """[B, N_FEATURES] float32 in [0, 1]. Only the first and last max_chars/2 characters are scanned."""
    half = max_chars // 2
    rows = [_one(t if len(t) <= max_chars else t[:half] + t[-half:], len(t)) for t in texts]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), N_FEATURES)


def task_inputs(embedding: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Task-head input [B, D + N_FEATURES]: the sentence embedding, then the surface features."""
    return np.hstack([embedding, surface_features(texts)]).astype(np.float32)
