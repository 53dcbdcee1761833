"""Answer format: does the prompt ask to pick one of given options (or fill a one-word answer slot), or to
generate an answer?

Why the quality predictor needs it: in the published outcome data, which model is best flips with the format
far more than with the topic. zephyr-7b-beta is the best of RouterDC's seven models on every option-scored
benchmark (ARC, MMLU, CMMLU) and among the worst on both generated ones (GSM8K, HumanEval); even on MMLU's
arithmetic-heavy questions it stays first while MetaMath, first on GSM8K, is fourth. An embedding puts a maths
word problem next to an MMLU maths question, so a predictor that knows only the embedding carries the option-
scored ranking over to generated answers, and loses most on exactly the prompts whose benchmark it never saw.
Marking the format lets similar prompts of the same format count for more (`quality_inputs`).

`offers_choices` is a surface rule, cheap for any prompt length (it reads the last 2,000 characters):
  - at least two lines that start with a lettered option: "A. ...", "(B) ...", "C) ..." (not "A: ...", which
    is also how dialogues name their speakers); or
  - the prompt ends in an answer slot: "Answer:" / "答案：" (the completion-style question that option-scored
    benchmarks use, e.g. ARC's "Question: ... Answer:").
This module knows nothing about embeddings' origin, models or routing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

TAIL_CHARS = 2000  # options and answer slots sit at the end of the prompt; bounds the scan for long prompts
SLOT_CHARS = 16  # an answer slot is the prompt's last word: only this many trailing characters are searched
_OPTION_LINE = re.compile(r"[ \t]*(?:\([A-J]\)|[A-J][.)])[ \t]+\S")  # matched at a line's start
_ANSWER_SLOT = re.compile(r"(?:answer|答案)\s*[:：]$", re.IGNORECASE)


def offers_choices(text: str) -> bool:
    """True when the prompt lists at least two lettered options or ends in an "Answer:" slot."""
    tail = text[-TAIL_CHARS:]
    if _ANSWER_SLOT.search(tail.rstrip()[-SLOT_CHARS:]):
        return True
    options = 0
    for line in tail.split("\n"):  # one anchored match per line: ~4 us for 2,000 characters of prose
        if _OPTION_LINE.match(line):
            options += 1
            if options == 2:
                return True
    return False


def choice_flags(texts: Sequence[str]) -> np.ndarray:
    """[B] bool: `offers_choices` per prompt."""
    return np.fromiter((offers_choices(t) for t in texts), dtype=bool, count=len(texts))


def quality_inputs(embedding: np.ndarray, choices: np.ndarray, weight: float) -> np.ndarray:
    """The quality predictor's input: [B, D] unit embeddings and [B] format flags -> [B, D + 2] unit rows.

    Appends weight * one-hot(format) and renormalises. Every row gains the same norm, so the cosine of two rows
    becomes (cos(embeddings) + weight**2 * same_format) / (1 + weight**2): prompts of the other format still
    count, by how similar they are, but a same-format prompt of equal similarity counts more. weight 0 returns
    the embedding unchanged ([B, D]): predictors trained without the format keep their input shape.
    """
    if weight == 0:
        return embedding
    choices = np.asarray(choices, dtype=bool).reshape(-1)
    if choices.shape[0] != embedding.shape[0]:
        raise ValueError(f"{embedding.shape[0]} embeddings but {choices.shape[0]} answer-format flags")
    onehot = np.stack([choices, ~choices], axis=1).astype(np.float32) * np.float32(weight)  # [B, 2]
    rows = np.concatenate([embedding.astype(np.float32, copy=False), onehot], axis=1)
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)
