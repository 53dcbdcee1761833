"""Passage-insertion augmentation for the task head: long foreign passages inside prompts that are not about them.

In the training data a long pasted passage occurs mostly in summarization and creative-writing prompts, so a
head over the mean-pooled embedding learns "long passage => summarization" and reads an unseen template that
asks a question about a long review or a list of facts as a summary request. This module builds training
variants that break that surface: a base row of a category whose label does not depend on the passage
(`PassageAugmentConfig.categories`) gets a prose passage cut from another training row of another source
family, inserted at a natural place, and keeps its label:

- a prompt of several lines: before its last non-empty line (the trailing question or instruction stays last)
  or after its first non-empty line (the leading instruction stays first), chosen by the seeded generator;
- a one-line prompt: the passage goes before it or after it, again seeded.

The converse (`build_short_pool`) keeps only a short start of the passage of summarization prompts, so that
the instruction, not the length, carries the label there too.

Donor passages come from rows of `donor_categories` (whose passages are data: articles, reviews, contexts):
the longest prose line of a row, or a blank-line-separated block of prose lines, of at least
`min_passage_chars` characters, without a "?" (a question belongs to an instruction), mostly ASCII letters (a
Chinese or Russian passage would teach "non-English text => this category", which is what
`translation_multilingual` means), with a leading "Article: "/"Context: "-style label removed, cut to a
seeded length at a sentence end (a word boundary when no sentence end keeps half of it).
Donors are drawn family-first (a uniform source family, then a uniform row of it) so that no one source's
passages define the variants. The pool is a fixed, seeded list of at most `pool_size` variants (their texts are
embedded once, models/embed_cache.py); a setting `share` uses the pool's first `share` part.
`fold_mask` says which variants a cross-validation fold may fit on: both the base row and the donor row must
be in the fold's fitting rows. No rule reads a template's wording. This module knows nothing about
embeddings, heads or the validation split (callers pass only the rows it may use).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# classification, extraction, reasoning and general QA are often asked about a given text, and their label
# does not change with the text; summarization, creative writing and translation act on the passage itself,
# roleplay/brainstorming/code/maths prompts with a pasted news story are not prompts people write
DEFAULT_CATEGORIES: tuple[str, ...] = ("classification", "extraction", "general_qa", "reasoning")
# prompts of these categories carry a pasted document that the instruction acts on (a news article, a review,
# a context paragraph): their passages are data, where other categories' long lines are instructions
# ("I want you to act as ...", writing constraints) that would change what the variant asks for
DONOR_CATEGORIES: tuple[str, ...] = ("classification", "extraction", "summarization")
_LABEL_PREFIX = re.compile(r"^\s*\w+(?: \w+)?:\s+")  # "Article: ", "Context: ", "Review text: "


@dataclass(frozen=True)
class PassageAugmentConfig:
    pool_size: int = 2400  # most variants built (each is embedded once, ~0.2-0.3 s on one CPU thread)
    categories: tuple[str, ...] = DEFAULT_CATEGORIES  # base rows' categories (labels kept)
    donor_categories: tuple[str, ...] = DONOR_CATEGORIES  # categories whose rows may give a passage
    min_passage_chars: int = 300  # shortest donor passage
    max_passage_chars: int = 2000  # longest inserted passage (the encoder reads ~2k characters)
    min_letter_share: float = 0.7  # letters / non-space characters of a donor passage (prose, not code/tables)
    max_non_ascii_share: float = 0.05  # non-ASCII letters / letters of a donor passage
    # the converse (`build_short_pool`): rows of these categories keep only the first short_min..short_max
    # characters of their passage, so that "summarize" is learned also without a long document
    short_categories: tuple[str, ...] = ("summarization",)
    short_min_chars: int = 80
    short_max_chars: int = 250
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AugmentedRows:
    """The variants, parallel arrays; row indices refer to the caller's arrays."""

    texts: list[str]
    base: np.ndarray  # [M] int64 index of the base row (label, gold flag and family come from it)
    donor: np.ndarray  # [M] int64 index of the row whose passage was inserted (the base row when shortened)
    where: list[str]  # "before_last_line" | "after_first_line" | "before" | "after" | "shortened"

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, share: float) -> np.ndarray:
        """[M] bool: the first round(share * M) variants (the pool is in seeded random order)."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"augment share must be in [0, 1], got {share}.")
        keep = np.zeros(len(self), dtype=bool)
        keep[: round(share * len(self))] = True
        return keep

    def fold_mask(self, fit_rows: np.ndarray) -> np.ndarray:
        """[M] bool: variants whose base row and donor row are both fitting rows (fit_rows: [N] bool)."""
        return np.asarray(fit_rows[self.base] & fit_rows[self.donor], dtype=bool)


def _is_prose(text: str, config: PassageAugmentConfig) -> bool:
    chars = [c for c in text if not c.isspace()]
    letters = [c for c in chars if c.isalpha()]
    if not chars or not letters or "?" in text:  # a question in it is part of an instruction
        return False
    non_ascii = sum(1 for c in letters if ord(c) >= 128)
    return len(letters) / len(chars) >= config.min_letter_share and non_ascii / len(letters) <= (
        config.max_non_ascii_share
    )


def passage_span(text: str, config: PassageAugmentConfig, blocks: bool = True) -> tuple[str, str] | None:
    """(substring of text, passage with whitespace runs joined) of the longest prose passage of a prompt (see
    module docstring), or None when it has none long enough. blocks=False: single lines only (a block may
    hold a template's instruction line)."""
    lines = [(ln.strip(), _LABEL_PREFIX.sub("", ln).strip()) for ln in text.splitlines()]
    lines = [(span[len(span) - len(p) :], p) for span, p in lines]  # the label prefix stays in the text
    paras = [
        (b.strip(), " ".join(b.split()))
        for b in (re.split(r"\n\s*\n", text) if blocks else [])
        if "?" not in b and ":" not in b.strip()[-1:] and b.count("\n") >= 1
    ]
    cands = [c for c in [*lines, *paras] if len(c[1]) >= config.min_passage_chars and _is_prose(c[1], config)]
    return max(cands, key=lambda c: len(c[1])) if cands else None


def passage_of(text: str, config: PassageAugmentConfig) -> str | None:
    """The longest prose passage of a prompt, whitespace runs joined (see `passage_span`)."""
    span = passage_span(text, config)
    return None if span is None else span[1]


_SENTENCE_END = re.compile(r"[.!][\"')\]]?(?=\s|$)")


def _cut(passage: str, n_chars: int) -> str:
    """At most n_chars characters of passage: up to its last sentence end within the limit when that keeps
    at least half of it (a trailing fragment is often a template's lead-in), else up to the last space."""
    limit = min(len(passage), n_chars)
    ends = [m.end() for m in _SENTENCE_END.finditer(passage, 0, limit)]
    if ends and ends[-1] >= limit // 2:
        return passage[: ends[-1]]
    if len(passage) <= n_chars:
        return passage
    cut = passage.rfind(" ", 0, n_chars)
    return passage[: cut if cut > 0 else n_chars].rstrip()


def insert_passage(text: str, passage: str, rng: np.random.Generator) -> tuple[str, str]:
    """(new text, where): passage inserted as its own paragraph at a natural place of text (module docstring)."""
    lines = text.strip("\n").split("\n")
    filled = [i for i, ln in enumerate(lines) if ln.strip()]
    if len(filled) >= 2:
        if rng.random() < 0.5:
            i = filled[-1]
            return "\n".join([*lines[:i], "", passage, "", *lines[i:]]), "before_last_line"
        i = filled[0] + 1
        return "\n".join([*lines[:i], "", passage, "", *lines[i:]]), "after_first_line"
    if rng.random() < 0.5:
        return f"{passage}\n\n{text.strip()}", "before"
    return f"{text.strip()}\n\n{passage}", "after"


def build_pool(
    texts: Sequence[str],
    categories: Sequence[str],
    families: Sequence[str],
    allowed: np.ndarray,
    config: PassageAugmentConfig,
) -> AugmentedRows:
    """Seeded variants of the allowed rows (allowed: [N] bool; base rows and donors come only from them).

    Base rows: the allowed rows of `config.categories`, about pool_size / len(categories) per category (fewer
    when a category has fewer rows). Each gets one donor passage from an allowed row of another family.
    """
    rng = np.random.default_rng(config.seed)
    fam = np.asarray(families)
    passages: dict[int, str] = {}
    donors_ok = allowed & np.isin(np.asarray(categories), config.donor_categories)
    for i in np.flatnonzero(donors_ok).tolist():
        p = passage_of(texts[i], config)
        if p is not None:
            passages[i] = p
    donor_families: dict[str, list[int]] = {}
    for j in passages:
        donor_families.setdefault(str(fam[j]), []).append(j)
    names = sorted(donor_families)
    if len(names) < 2:
        raise ValueError(f"Passage augmentation needs donor passages from 2+ source families; found {names}.")
    cats = np.asarray(categories)
    per_cat = config.pool_size // max(len(config.categories), 1)
    bases: list[int] = []
    for c in config.categories:
        rows = np.flatnonzero(allowed & (cats == c))
        bases += [int(i) for i in rng.permutation(rows)[:per_cat]]
    bases = [bases[int(k)] for k in rng.permutation(len(bases))]  # seeded order: a prefix is a fair sample
    out_texts: list[str] = []
    base_ix: list[int] = []
    donor_ix: list[int] = []
    where: list[str] = []
    for b in bases:
        others = [f for f in names if f != fam[b]]
        pool = donor_families[others[int(rng.integers(len(others)))]]
        d = pool[int(rng.integers(len(pool)))]
        n_chars = int(rng.integers(config.min_passage_chars, config.max_passage_chars + 1))
        text, at = insert_passage(texts[b], _cut(passages[d], n_chars), rng)
        out_texts.append(text)
        base_ix.append(b)
        donor_ix.append(d)
        where.append(at)
    return AugmentedRows(out_texts, np.array(base_ix, dtype=np.int64), np.array(donor_ix, dtype=np.int64), where)


def build_short_pool(
    texts: Sequence[str],
    categories: Sequence[str],
    families: Sequence[str],
    allowed: np.ndarray,
    config: PassageAugmentConfig,
) -> AugmentedRows:
    """The converse of `build_pool`: each allowed row of `config.short_categories` that holds a long passage
    line and an instruction beside it, with that line cut to a seeded short_min..short_max characters (at a
    sentence end when one keeps half of it) when this at least halves the prompt, in seeded order. Donor = the
    base row itself. Labels are kept; families are not needed."""
    rng = np.random.default_rng(config.seed)
    rows = np.flatnonzero(allowed & np.isin(np.asarray(categories), config.short_categories))
    out_texts: list[str] = []
    bases: list[int] = []
    for b in rng.permutation(rows).tolist():
        span = passage_span(texts[b], config, blocks=False)
        if span is None or len(texts[b]) - len(span[0]) < 10:  # no instruction outside the passage
            continue
        n_chars = int(rng.integers(config.short_min_chars, config.short_max_chars + 1))
        short = texts[b].replace(span[0], _cut(span[1], n_chars), 1)
        if len(short) > len(texts[b]) // 2:  # the passage was one line of a longer document: not short
            continue
        out_texts.append(short)
        bases.append(b)
    base = np.array(bases, dtype=np.int64)
    return AugmentedRows(out_texts, base, base.copy(), ["shortened"] * len(bases))


PoolBuilder = Callable[[Sequence[str], Sequence[str], Sequence[str], np.ndarray, PassageAugmentConfig], AugmentedRows]
# the one registry of augmentations: task-head setting (a share of the pool, models/task_cv.TaskSettings) -> builder
AUGMENT_POOLS: dict[str, PoolBuilder] = {
    "augment_passages": build_pool,
    "augment_short_passages": build_short_pool,
}
