"""Grouped inner cross-validation for the task head: choose settings without touching the validation split.

`TaskSettings` bundles everything that is tuned (fit hyper-parameters, class balancing, balancing of source
families within a class, the weight of regex-labelled rows, the lexical featurizer). `cross_validate` trains
one head per inner fold
(models/splits.inner_family_folds) on the *training* part only and returns out-of-fold logits, from which the
macro-F1 that ranks settings and the softmax temperature are computed. `tune` tries a small list of
candidate changes alone, then combines compatible ones greedily, by inner macro-F1. Passage-augmented
variants (models/augment.py, `AugmentInputs`) join a fold's fitting rows only when their base row and their
donor row are both fitting rows of that fold. This module knows nothing about files, the encoder or the
reported validation split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from models.augment import AUGMENT_POOLS, AugmentedRows
from models.fit import balanced_weights, family_balanced_weights
from models.lexical import LexicalConfig, lexical_rows, shared_ngrams
from models.metrics import classification_report
from models.task_head import TaskFitConfig, TaskHead, TaskHeadConfig, fit_task_head

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSettings:
    fit: TaskFitConfig = field(default_factory=TaskFitConfig)
    lexical: LexicalConfig = field(default_factory=LexicalConfig)
    class_weight_power: float = 0.5  # row weight ∝ (1 / class count) ** power; 0 = none, 1 = balanced
    rule_weight: float = 0.7  # weight of regex-labelled rows relative to gold-labelled rows
    # within a class, weight ∝ (1 / rows of the row's source family) ** power: 0 = none, 1 = families equal
    family_weight_power: float = 0.0
    # > 0: append the static word-piece vectors of the first/last static_chars characters to the dense inputs
    static_chars: int = 0
    # > 1: train on the n-grams that occur in at least this many source families of the training rows only
    # (models/lexical.shared_ngrams); serving reads every n-gram
    min_ngram_families: int = 0
    # > 0: add this share of the passage-augmentation pool (models/augment.py) to the fitting rows; each variant
    # takes its base row's label, gold flag and source family (so it shares that family's balancing weight)
    augment_passages: float = 0.0
    # > 0: add this share of the converse pool (summarization prompts with their passage cut short)
    augment_short_passages: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def override(self, **changes: Any) -> TaskSettings:
        """Copy with changes; keys of TaskFitConfig / LexicalConfig are routed to the nested configs."""
        fit = {k: v for k, v in changes.items() if k in TaskFitConfig.__dataclass_fields__}
        lex = {k: v for k, v in changes.items() if k in LexicalConfig.__dataclass_fields__}
        top = {k: v for k, v in changes.items() if k not in fit and k not in lex}
        return replace(self, fit=replace(self.fit, **fit), lexical=replace(self.lexical, **lex), **top)


# Candidate changes from the defaults (each costs ~1 min of 2-core CPU). `tune` tries each alone, then adds
# each other compatible one to the best (greedy forward selection, `rounds` deep). Validation shifts to unseen
# source families, and a class learned mostly from one templated source (e.g. reasoning from five P3
# templates) transfers badly; family balancing is the knob aimed at that shift.
# The shipped artifact is `triage train-classifier --tune --seed 0`; its table is in metrics.json "tuning".
TUNING_GRID: tuple[dict[str, Any], ...] = (
    {},
    {"l2_dense": 1e-5, "l2_lexical": 1e-5},
    {"l2_dense": 1e-3},
    {"l2_lexical": 1e-3},
    {"class_weight_power": 1.0},
    {"rule_weight": 0.4},
    {"rule_weight": 1.0},
    {"bigrams": False},
    {"head_chars": 150, "tail_chars": 150},
    {"family_weight_power": 0.5},
    {"family_weight_power": 1.0},
    # issue 13: softer targets against the 10-20% wrong regex labels, and n-gram row dropout so that a class is
    # also learned from the embedding when its training sources' template words are absent
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.2},
    {"lexical_row_dropout": 0.3},
    {"lexical_row_dropout": 0.6},
    # issue 13, second pass: what the instruction words say, not which template they come from
    {"static_chars": 150},
    {"min_ngram_families": 2},
    # issue 13, third pass: break "long passage => summarization" with foreign passages in prompts whose label
    # does not depend on them, and the converse: summarization prompts whose passage is short (models/augment.py)
    {"augment_passages": 0.5},
    {"augment_passages": 1.0},
    {"augment_short_passages": 1.0},
)


@dataclass
class AugmentInputs:
    """Passage-augmented variants: rows.base/rows.donor index the arrays they are passed with."""

    rows: AugmentedRows
    x: np.ndarray  # [M, D] embedding + surface features of the variants' own texts (models/features.task_inputs)
    static: Mapping[int, np.ndarray] = field(default_factory=dict)  # chars -> [M, 2H] static vectors

    def reindexed(self, subset: np.ndarray) -> AugmentInputs:
        """The same variants with base/donor indices into arrays[subset] (subset: sorted int indices holding
        every base and donor row)."""
        pos = np.searchsorted(subset, [self.rows.base, self.rows.donor])  # [2, M]
        if not (np.isin(self.rows.base, subset).all() and np.isin(self.rows.donor, subset).all()):
            raise ValueError("Augmented variants refer to rows outside the subset; build the pool on it.")
        rows = AugmentedRows(self.rows.texts, pos[0], pos[1], self.rows.where)
        return AugmentInputs(rows, self.x, self.static)


Augments = Mapping[str, AugmentInputs]  # TaskSettings field (a share, models/augment.AUGMENT_POOLS) -> variants


def fitting_rows(
    settings: TaskSettings,
    fit_mask: np.ndarray,
    dense: np.ndarray,
    texts: Sequence[str],
    y: np.ndarray,
    gold: np.ndarray,
    families: np.ndarray,
    aug: Augments | None,
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(dense, texts, y, gold, families) to fit on: the fit_mask [N] rows, then for each augmentation the
    settings' share of its variants whose base and donor rows are both in fit_mask. dense is already
    `task_dense`."""
    idx = np.flatnonzero(fit_mask)
    parts = [(dense[idx], [texts[int(i)] for i in idx], idx)]
    for name in AUGMENT_POOLS:
        share = float(getattr(settings, name))
        if not share:
            continue
        if aug is None or name not in aug:
            raise ValueError(
                f"{name}={share} but no such augmented variants were given; build the pool "
                "(models/augment.AUGMENT_POOLS) whenever the settings or the tuning grid use it."
            )
        a = aug[name]
        keep = np.flatnonzero(a.rows.head(share) & a.rows.fold_mask(fit_mask))
        texts_k = [a.rows.texts[int(k)] for k in keep]
        parts.append((task_dense(settings, a.x, a.static)[keep], texts_k, a.rows.base[keep]))
    src = np.concatenate([p[2] for p in parts])  # [N_fit] the row each fitting row takes its label from
    return (
        np.vstack([p[0] for p in parts]).astype(np.float32, copy=False),
        [t for p in parts for t in p[1]],
        y[src],
        gold[src],
        families[src],
    )


def task_dense(settings: TaskSettings, dense: np.ndarray, static: Mapping[int, np.ndarray]) -> np.ndarray:
    """The head's dense inputs for these settings: dense [N, D], plus static[static_chars] [N, 2H] when on."""
    if not settings.static_chars:
        return dense
    if settings.static_chars not in static:
        raise ValueError(
            f"static_chars={settings.static_chars} but static vectors were computed for {sorted(static)}; "
            "compute them for every value the settings or the tuning grid use."
        )
    return np.hstack([dense, static[settings.static_chars]]).astype(np.float32)


def train_task(
    settings: TaskSettings,
    dense: np.ndarray,
    texts: Sequence[str],
    y: np.ndarray,
    gold: np.ndarray,
    families: np.ndarray,
    n_classes: int,
    temperature: float = 1.0,
) -> TaskHead:
    """One head on the given rows with the settings' weighting. dense [N, D] (already `task_dense`), texts,
    y/gold/families [N]."""
    allowed = (
        shared_ngrams(texts, [str(f) for f in families], settings.lexical, settings.min_ngram_families)
        if settings.min_ngram_families > 1
        else None
    )
    rows = lexical_rows(texts, settings.lexical, allowed)
    w = (
        balanced_weights(y, n_classes, settings.class_weight_power)
        * family_balanced_weights(y, families, settings.family_weight_power)
        * np.where(gold, 1.0, settings.rule_weight)
    )
    cfg = TaskHeadConfig(
        dense_dim=dense.shape[1],
        n_classes=n_classes,
        lexical=settings.lexical,
        temperature=temperature,
        static_chars=settings.static_chars,
    )
    return fit_task_head(cfg, dense, rows, y, w.astype(np.float32), settings.fit)


@dataclass
class CVResult:
    settings: TaskSettings
    oof_logits: np.ndarray  # [N, C] out-of-fold logits of the rows given to cross_validate
    macro_f1: float
    gold_macro_f1: float


def cross_validate(
    settings: TaskSettings,
    dense: np.ndarray,
    texts: Sequence[str],
    y: np.ndarray,
    gold: np.ndarray,
    families: np.ndarray,
    folds: np.ndarray,
    labels: Sequence[str],
    static: Mapping[int, np.ndarray] | None = None,
    aug: Augments | None = None,
) -> CVResult:
    """Out-of-fold logits over `folds` [N] (fold ids); all arrays cover the training part only.

    static: chars -> [N, 2H] static vectors (models/static_vectors.py), needed when settings.static_chars > 0.
    aug: augmented variants of these rows per augmentation setting, needed when that setting is > 0; scored
    never, fitted on only in folds that fit on both their base and donor rows.
    """
    dense = task_dense(settings, dense, static or {})
    rows = lexical_rows(texts, settings.lexical)
    oof = np.zeros((len(y), len(labels)), dtype=np.float32)
    for j in np.unique(folds):
        fit_rows, held = np.flatnonzero(folds != j), np.flatnonzero(folds == j)
        if len(fit_rows) == 0:  # one family only: nothing to train on, leave uniform logits
            logger.warning("inner fold %d holds every training row; its out-of-fold logits stay uniform", j)
            continue
        head = train_task(
            settings, *fitting_rows(settings, folds != j, dense, texts, y, gold, families, aug), len(labels)
        )
        oof[held] = head.logits(dense[held], rows.take(held))
    pred = oof.argmax(1)
    rep = classification_report(y, pred, labels)
    gold_rep = classification_report(y[gold], pred[gold], labels)
    return CVResult(settings, oof, float(rep["macro_f1"]), float(gold_rep["macro_f1"]))


def tune(
    base: TaskSettings,
    grid: Sequence[dict[str, Any]],
    dense: np.ndarray,
    texts: Sequence[str],
    y: np.ndarray,
    gold: np.ndarray,
    families: np.ndarray,
    folds: np.ndarray,
    labels: Sequence[str],
    rounds: int = 3,
    static: Mapping[int, np.ndarray] | None = None,
    aug: Augments | None = None,
) -> tuple[CVResult, list[dict[str, Any]]]:
    """Greedy forward selection over `grid` by inner macro-F1; returns the best result and every row tried.

    Round 1 cross-validates base + each candidate alone. Each later round adds, to the best so far, each
    candidate that touches none of its keys; it stops when a round improves nothing.
    """
    if not grid:
        raise ValueError("The tuning grid is empty; give at least one candidate ({} = the defaults).")
    table: list[dict[str, Any]] = []
    tried: dict[str, CVResult] = {}

    def score(changes: dict[str, Any]) -> CVResult:
        key = repr(sorted(changes.items()))
        if key not in tried:
            res = cross_validate(base.override(**changes), dense, texts, y, gold, families, folds, labels, static, aug)
            tried[key] = res
            row = {"changes": changes, "inner_macro_f1": res.macro_f1, "inner_gold_macro_f1": res.gold_macro_f1}
            table.append(row)
            logger.info("inner CV %s: macro-F1 %.4f (gold rows %.4f)", changes, res.macro_f1, res.gold_macro_f1)
        return tried[key]

    best_changes, best = max(((dict(c), score(dict(c))) for c in grid), key=lambda p: p[1].macro_f1)
    for _ in range(rounds - 1):
        extended = [{**best_changes, **c} for c in grid if c and not set(c) & set(best_changes)]
        if not extended:
            break
        changes, cand = max(((c, score(c)) for c in extended), key=lambda p: p[1].macro_f1)
        if cand.macro_f1 <= best.macro_f1:
            break
        best_changes, best = changes, cand
    return best, table
