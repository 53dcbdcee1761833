"""`triage train-classifier`: train the task-category and complexity heads and write the classifier artifact.

Steps: embed the prompts and the outcomes prompts once (cached under .cache/triage/), append cheap surface
features (script, digits, code symbols, length; models/features.py), optionally static word-piece vectors of
the prompt's start and end (models/static_vectors.py), and hashed start/end word n-grams (models/lexical.py)
for the task head, hold out whole source families for validation (models/splits.py), when a setting asks for
it build seeded passage-augmented variants of training-part rows (models/augment.py; embedded once, cached),
choose the task head's settings by grouped inner cross-validation on the training part only (--tune runs the
grid in models/task_cv.py, which is how the shipped artifact was made; otherwise the flags' settings are
cross-validated once), fit the softmax temperature on the inner out-of-fold logits, train the task head on
the training part, print per-category P/R/F1 and the confusion matrix on the held-out sources, train the
complexity head on a seeded prompt_id split of the outcomes file, then refit both heads on all rows with the
same settings (unless --no-refit) and write
  <out>/heads.safetensors   task (dense + 16k x 11 n-gram table) + complexity weights (under 1 MB)
  <out>/labels.json         category order, encoder id, max_tokens, truncation, head configs
  <out>/metrics.json        validation metrics, split, seed, data hashes
The reported metrics are those of the held-out models; the shipped weights are the refit ones.
This script knows nothing about serving; `models/classifier.py` loads what it writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.augment import AUGMENT_POOLS, PassageAugmentConfig
from models.data import (
    DEFAULT_OUTCOMES,
    DEFAULT_PROMPTS,
    REPO_ROOT,
    OutcomeTable,
    PromptSet,
    load_outcomes,
    load_prompts,
)
from models.embed_cache import DEFAULT_CACHE_DIR, embed_cached
from models.encoder import EncoderConfig
from models.features import FEATURE_NAMES, task_inputs
from models.fit import FitConfig, fit_head
from models.heads import HeadConfig, MLPHead
from models.lexical import LexicalConfig, lexical_rows
from models.metrics import classification_report, format_report, regression_report
from models.splits import auto_val_families, heldout_mask, inner_family_folds, source_family, split_by_families
from models.static_vectors import input_table, static_vectors
from models.task_cv import (
    TUNING_GRID,
    AugmentInputs,
    TaskSettings,
    cross_validate,
    fitting_rows,
    task_dense,
    train_task,
    tune,
)
from models.task_head import TaskFitConfig, TaskHead, fit_temperature

logger = logging.getLogger(__name__)
DEFAULT_OUT = REPO_ROOT / "models" / "artifacts" / "classifier"
ARTIFACT_VERSION = 2
COMPLEXITY_MEANING = (
    "Predicted share of the 7 open 7B/8B models in the RouterDC outcomes (Mistral-7B, MetaMath-Mistral-7B, "
    "Chinese-Mistral-7B, zephyr-7b-beta, dolphin-2.6-mistral-7b, Llama-3-8B, dolphin-2.9-llama3-8b) that "
    "would answer the prompt wrongly: 0 = all of them get it right, 1 = none does. Learned on MMLU, CMMLU, "
    "ARC, GSM8K "
    "and HumanEval prompts only; on other kinds of prompts (creative writing, chat) it is an extrapolation."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triage train-classifier", description=__doc__.splitlines()[0])
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=DEFAULT_PROMPTS, help="labelled prompts (.jsonl[.gz])")
    g.add_argument(
        "--outcomes",
        type=Path,
        default=DEFAULT_OUTCOMES,
        help="per-model outcomes (.jsonl[.gz]) used to learn complexity",
    )
    g.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="embedding cache directory")
    g = p.add_argument_group("validation split")
    g.add_argument(
        "--val-sources",
        default="auto",
        help="comma-separated source families to hold out, or 'auto' (see models/splits.py)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed for the split tie-breaks, init and shuffling")
    g.add_argument(
        "--complexity-holdout",
        type=float,
        default=0.2,
        help="share of outcome prompts (per benchmark) held out to validate complexity",
    )
    g = p.add_argument_group("encoder")
    g.add_argument("--max-tokens", type=int, default=256, help="token budget per prompt incl. [CLS]/[SEP]")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device")
    g.add_argument("--encoder-model", default="", help="local BERT dir or hub id ('' = bundled MiniLM)")
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    d, dl = TaskSettings(), LexicalConfig()
    g = p.add_argument_group("task head (linear over embedding + surface features + hashed n-grams)")
    g.add_argument("--tune", action="store_true", help="pick settings from models/task_cv.TUNING_GRID by inner CV")
    g.add_argument("--tune-rounds", type=int, default=3, help="greedy forward-selection rounds with --tune")
    g.add_argument(
        "--tune-keys",
        default="",
        help="with --tune, only the grid entries that change one of these comma-separated settings "
        "(e.g. label_smoothing,lexical_row_dropout: try new knobs on top of the settings given by the flags)",
    )
    g.add_argument("--inner-folds", type=int, default=5, help="grouped inner CV folds on the training part")
    g.add_argument("--task-steps", type=int, default=d.fit.steps, help="full-batch Adam steps")
    g.add_argument("--task-lr", type=float, default=d.fit.lr, help="Adam peak learning rate")
    g.add_argument("--label-smoothing", type=float, default=d.fit.label_smoothing, help="cross-entropy smoothing")
    g.add_argument(
        "--lexical-row-dropout",
        type=float,
        default=d.fit.lexical_row_dropout,
        help="share of rows trained without their n-grams at each step",
    )
    g.add_argument("--l2-dense", type=float, default=d.fit.l2_dense, help="L2 on embedding/surface weights")
    g.add_argument("--l2-lexical", type=float, default=d.fit.l2_lexical, help="L2 on n-gram weights")
    g.add_argument("--lexical-buckets", type=int, default=dl.n_buckets, help="hash buckets for n-grams")
    g.add_argument("--lexical-chars", type=int, default=dl.head_chars, help="characters read at start and end")
    g.add_argument("--no-bigrams", action="store_true", help="uni-grams only")
    g.add_argument(
        "--class-weight-power",
        type=float,
        default=d.class_weight_power,
        help="row weight ∝ (1/class count)^power; 0 = none, 1 = balanced",
    )
    g.add_argument(
        "--family-weight-power",
        type=float,
        default=d.family_weight_power,
        help="within a category, row weight ∝ (1/rows of its source family)^power; 1 = families weigh the same",
    )
    g.add_argument(
        "--rule-weight",
        type=float,
        default=d.rule_weight,
        help="weight of rows labelled by regex rules relative to gold-labelled rows",
    )
    g.add_argument(
        "--static-chars",
        type=int,
        default=d.static_chars,
        help="append static word-piece vectors of the first/last N characters (models/static_vectors.py); 0 = off",
    )
    g.add_argument(
        "--min-ngram-families",
        type=int,
        default=d.min_ngram_families,
        help="train on n-grams seen in at least this many source families (0 = all n-grams)",
    )
    g.add_argument(
        "--augment-passages",
        type=float,
        default=d.augment_passages,
        help="share of the passage-augmentation pool added to the fitting rows (models/augment.py); 0 = off",
    )
    g.add_argument(
        "--augment-short-passages",
        type=float,
        default=d.augment_short_passages,
        help="share of the converse pool (summarization prompts with their passage cut short) added; 0 = off",
    )
    g.add_argument(
        "--augment-pool",
        type=int,
        default=PassageAugmentConfig().pool_size,
        help="variants in the passage-augmentation pool (built from training-part rows; each text is embedded once)",
    )
    g = p.add_argument_group("complexity head")
    g.add_argument("--epochs", type=int, default=40, help="training epochs")
    g.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact directory")
    g.add_argument("--no-refit", action="store_true", help="ship the held-out-validated heads, do not refit on all")
    return p


def task_settings(args: argparse.Namespace) -> TaskSettings:
    """The task head's settings from the command line."""
    return TaskSettings(
        fit=TaskFitConfig(
            steps=args.task_steps,
            lr=args.task_lr,
            l2_dense=args.l2_dense,
            l2_lexical=args.l2_lexical,
            label_smoothing=args.label_smoothing,
            lexical_row_dropout=args.lexical_row_dropout,
            seed=args.seed,
        ),
        lexical=LexicalConfig(
            n_buckets=args.lexical_buckets,
            head_chars=args.lexical_chars,
            tail_chars=args.lexical_chars,
            bigrams=not args.no_bigrams,
        ),
        class_weight_power=args.class_weight_power,
        family_weight_power=args.family_weight_power,
        rule_weight=args.rule_weight,
        static_chars=args.static_chars,
        min_ngram_families=args.min_ngram_families,
        augment_passages=args.augment_passages,
        augment_short_passages=args.augment_short_passages,
    )


def train_complexity_head(emb: np.ndarray, target: np.ndarray, args: argparse.Namespace) -> MLPHead:
    head = MLPHead(HeadConfig.from_name("complexity", in_dim=emb.shape[1]))
    fit_head(head, emb, target[:, None], "bce", FitConfig(epochs=args.epochs, lr=args.lr, seed=args.seed))
    return head


def tuning_grid(args: argparse.Namespace) -> tuple[dict[str, Any], ...]:
    """The candidate changes --tune tries (all of TUNING_GRID, or those touching --tune-keys); ({},) otherwise."""
    keys = {k.strip() for k in args.tune_keys.split(",") if k.strip()}
    return tuple(c for c in TUNING_GRID if not keys or not c or set(c) & keys) if args.tune else ({},)


def static_inputs(texts: list[str], enc_cfg: EncoderConfig, args: argparse.Namespace) -> dict[int, np.ndarray]:
    """chars -> [N, 2H] static vectors for every static_chars the flags or the tuning grid use (none: {})."""
    chars = {args.static_chars, *(int(c.get("static_chars", 0)) for c in tuning_grid(args))} - {0}
    if not chars:
        return {}
    from transformers import AutoModel, AutoTokenizer  # heavy import kept out of module import

    tokenizer = AutoTokenizer.from_pretrained(enc_cfg.model_path, use_fast=True)
    table = input_table(AutoModel.from_pretrained(enc_cfg.model_path))
    return {c: static_vectors(texts, tokenizer, table, c) for c in sorted(chars)}


def augment_inputs(
    ps: PromptSet, train_mask: np.ndarray, enc_cfg: EncoderConfig, args: argparse.Namespace
) -> dict[str, AugmentInputs]:
    """Augmented variants of the training-part rows (indices into ps) for every augmentation setting that the
    flags or the tuning grid use (models/augment.AUGMENT_POOLS), embedded (cached by their texts' hash) and
    featurized like the prompts; {} when none is used."""
    flags = {"augment_passages": args.augment_passages, "augment_short_passages": args.augment_short_passages}
    used = [n for n in AUGMENT_POOLS if flags[n] or any(c.get(n) for c in tuning_grid(args))]
    families = [source_family(s) for s in ps.sources]
    cfg = PassageAugmentConfig(pool_size=args.augment_pool, seed=args.seed)
    out: dict[str, AugmentInputs] = {}
    for name in used:
        rows = AUGMENT_POOLS[name](ps.texts, ps.categories, families, train_mask, cfg)
        t0 = time.perf_counter()
        emb = embed_cached(rows.texts, enc_cfg, None, args.cache_dir)  # [M, 384]; key = hash of the texts
        logger.info("%s: %d texts embedded or loaded in %.1f s", name, len(rows), time.perf_counter() - t0)
        out[name] = AugmentInputs(rows, task_inputs(emb, rows.texts), static_inputs(rows.texts, enc_cfg, args))
    return out


def run_task(
    ps: PromptSet,
    x: np.ndarray,
    static: dict[int, np.ndarray],
    labels: list[str],
    args: argparse.Namespace,
    enc_cfg: EncoderConfig,
) -> tuple[TaskSettings, float, dict[str, Any], dict[str, AugmentInputs]]:
    """Inner-CV settings + temperature on the training part, then one report on the held-out sources."""
    y = np.array([labels.index(c) for c in ps.categories])
    gold, families = ps.is_gold(), np.array([source_family(s) for s in ps.sources])
    fams = (
        auto_val_families(ps.categories, ps.sources, seed=args.seed)
        if args.val_sources == "auto"
        else [s.strip() for s in args.val_sources.split(",") if s.strip()]
    )
    split = split_by_families(ps.categories, ps.sources, fams)
    tr, va = ~split.val_mask, split.val_mask
    itr = np.flatnonzero(tr)
    texts_tr = [ps.texts[i] for i in itr]
    folds = inner_family_folds([ps.sources[i] for i in itr], [ps.ids[i] for i in itr], args.inner_folds, args.seed)
    static_tr = {c: v[tr] for c, v in static.items()}
    aug = augment_inputs(ps, tr, enc_cfg, args)  # indices into ps
    aug_tr = {k: a.reindexed(itr) for k, a in aug.items()}  # indices into the training part
    best, table = tune(
        task_settings(args),
        tuning_grid(args),
        x[tr],
        texts_tr,
        y[tr],
        gold[tr],
        families[tr],
        folds,
        labels,
        args.tune_rounds,
        static_tr,
        aug_tr,
    )
    settings = best.settings
    temperature = fit_temperature(best.oof_logits, y[tr])
    print(f"inner CV ({args.inner_folds} grouped folds on the training part):")
    for row in table:
        print(
            f"  {row['changes'] or 'defaults'}: macro-F1 {row['inner_macro_f1']:.4f} "
            f"(gold rows {row['inner_gold_macro_f1']:.4f})"
        )
    print(f"chosen {settings.to_json()}, temperature {temperature}")
    # The same settings on folds cut by row, not by source: the distance between the two scores is what
    # unseen sources cost, as opposed to what the features cannot separate at all.
    row_folds = inner_family_folds(
        [ps.sources[i] for i in itr],
        [ps.ids[i] for i in itr],
        args.inner_folds,
        args.seed,
        row_split_families=sorted(set(families[tr])),
    )
    by_row = cross_validate(
        settings, x[tr], texts_tr, y[tr], gold[tr], families[tr], row_folds, labels, static_tr, aug_tr
    )
    print(f"same settings, folds cut by row instead of by source family: macro-F1 {by_row.macro_f1:.4f}")
    dense = task_dense(settings, x, static)
    fit = fitting_rows(settings, tr, dense, ps.texts, y, gold, families, aug)
    head = train_task(settings, *fit, len(labels), temperature)
    pred = head.logits(dense[va], lexical_rows([ps.texts[i] for i in np.flatnonzero(va)], settings.lexical)).argmax(1)
    report = classification_report(y[va], pred, labels)
    gold_report = classification_report(y[va][gold[va]], pred[gold[va]], labels)
    print(f"\nvalidation on held-out source families {split.val_families}")
    print(format_report(report, labels))
    print(f"gold-labelled validation rows only: macro-F1 {gold_report['macro_f1']:.3f} (n={gold_report['n']})")
    metrics = {
        **report,
        "gold_only": {k: gold_report[k] for k in ("macro_f1", "accuracy", "n", "per_category")},
        "split": split.describe(ps.categories),
        "head": head.config.to_json(),
        "augmentation": {
            "config": PassageAugmentConfig(pool_size=args.augment_pool, seed=args.seed).to_json(),
            "pools": {
                k: {"variants": len(a.rows), "used": round(getattr(settings, k) * len(a.rows))} for k, a in aug.items()
            },
            "meaning": "training-only variants (models/augment.py) built from training-part rows only: "
            "augment_passages inserts a foreign prose passage (from a row of another source family) into a row "
            "whose label does not depend on it; augment_short_passages cuts summarization prompts' passages short; "
            "the served head reads prompts exactly as before",
        },
        "tuning": {
            "protocol": (
                "every setting and the softmax temperature were chosen on grouped inner cross-validation of the "
                "training part only (models/splits.inner_family_folds: whole source families per fold, ShareGPT "
                "rows hashed by id); the held-out validation families were scored once, with the chosen settings"
            ),
            "inner_folds": args.inner_folds,
            "candidates": table,
            "chosen": settings.to_json(),
            "inner_macro_f1": best.macro_f1,
            "inner_gold_macro_f1": best.gold_macro_f1,
            "inner_row_split_macro_f1": by_row.macro_f1,
            "inner_row_split_meaning": (
                "the chosen settings cross-validated on the training part with folds cut by row (seeded hash of "
                "the id) instead of by source family: the in-distribution score; the gap to inner_macro_f1 is "
                "the cost of sources the head has not seen"
            ),
            "temperature": temperature,
        },
    }
    return settings, temperature, metrics, aug


def run_complexity(ot: OutcomeTable, emb: np.ndarray, args: argparse.Namespace) -> tuple[MLPHead, dict[str, Any]]:
    target = (1.0 - ot.scores.mean(axis=1)).astype(np.float32)  # [P] share of models that fail
    ho = heldout_mask(ot.prompt_ids, ot.benchmarks, args.complexity_holdout, args.seed)
    head = train_complexity_head(emb[~ho], target[~ho], args)
    pred = head.predict(emb[ho])[:, 0]
    rep = regression_report(target[ho], pred, [b for b, h in zip(ot.benchmarks, ho, strict=True) if h])
    fmt = {
        k: "n/a" if rep[k] is None else f"{rep[k]:.3f}" for k in ("pearson", "spearman", "pearson_within_group_mean")
    }
    print(
        f"\ncomplexity on {int(ho.sum())} held-out outcome prompts: MAE {rep['mae']:.3f} "
        f"(predict-mean {rep['mae_predict_mean']:.3f}), Pearson {fmt['pearson']}, "
        f"Spearman {fmt['spearman']}, "
        f"within-benchmark Pearson {fmt['pearson_within_group_mean']}"
    )
    return head, {
        **rep,
        "meaning": COMPLEXITY_MEANING,
        "target": "1 - mean score over the 7 models",
        "split": f"seeded prompt_id hash, {args.complexity_holdout:.0%} of each benchmark held out",
        "head": head.config.to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    enc_cfg = EncoderConfig(model=args.encoder_model, max_tokens=args.max_tokens, device=args.device)
    ps, ot = load_prompts(args.data), load_outcomes(args.outcomes)
    emb_p = embed_cached(ps.texts, enc_cfg, ps.cache_id, args.cache_dir)  # [N, 384]
    x_task = task_inputs(emb_p, ps.texts)  # [N, 384 + N_FEATURES]
    emb_o = embed_cached(ot.texts, enc_cfg, ot.cache_id, args.cache_dir)  # [P, 384]
    static = static_inputs(ps.texts, enc_cfg, args)  # chars -> [N, 2 x 384]; {} when no setting uses them
    labels = sorted(set(ps.categories))
    settings, temperature, task_metrics, aug = run_task(ps, x_task, static, labels, args, enc_cfg)
    cx_head, cx_metrics = run_complexity(ot, emb_o, args)
    y = np.array([labels.index(c) for c in ps.categories])
    gold, dense = ps.is_gold(), task_dense(settings, x_task, static)
    families = np.array([source_family(s) for s in ps.sources])
    fit_rows = (
        np.ones(len(y), dtype=bool)
        if not args.no_refit
        else ~split_by_families(ps.categories, ps.sources, task_metrics["split"]["val_families"]).val_mask
    )
    # the variants were built from training-part rows, so every one of them joins a refit on all rows
    task_head = train_task(
        settings, *fitting_rows(settings, fit_rows, dense, ps.texts, y, gold, families, aug), len(labels), temperature
    )
    if not args.no_refit:
        cx_head = train_complexity_head(emb_o, (1.0 - ot.scores.mean(axis=1)).astype(np.float32), args)
    write_artifact(
        args.out,
        labels,
        enc_cfg,
        task_head,
        cx_head,
        {
            "command": "triage train-classifier " + shlex.join(sys.argv[1:] if argv is None else argv),
            "task": task_metrics,
            "complexity": cx_metrics,
            "seed": args.seed,
            "shipped_weights": "held-out models" if args.no_refit else "refit on all rows with the same settings",
            "training": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "data": {
                "prompts_sha256": ps.sha256,
                "outcomes_sha256": ot.sha256,
                "n_prompts": len(ps),
                "n_outcome_prompts": len(ot),
            },
            "wall_s": round(time.perf_counter() - t0, 1),
        },
    )
    print(f"\nwrote {args.out} (macro-F1 {task_metrics['macro_f1']:.3f} on held-out sources)")
    return 0


def write_artifact(
    out: Path,
    labels: list[str],
    enc_cfg: EncoderConfig,
    task_head: TaskHead,
    cx_head: MLPHead,
    metrics: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"complexity.{k}": v.detach().cpu().contiguous() for k, v in cx_head.state_dict().items()}
    save_file({**tensors, **task_head.save_tensors()}, str(out / "heads.safetensors"))
    meta = {
        "format_version": ARTIFACT_VERSION,
        "categories": labels,
        "encoder_id": enc_cfg.encoder_id,
        "encoder_model": enc_cfg.model,
        "max_tokens": enc_cfg.max_tokens,
        "truncation": enc_cfg.truncation_meta(),
        "embedding_dim": cx_head.config.in_dim,
        "task_inputs": {
            "layout": "dense [embedding (384), surface features (models/features.py), static word-piece vectors "
            "of the first and last heads.task.static_chars characters when > 0 (2 x 384, models/static_vectors.py)]"
            " + hashed n-grams (models/lexical.py, config in heads.task.lexical)",
            "surface_features": list(FEATURE_NAMES),
        },
        "heads": {"task": task_head.config.to_json(), "complexity": cx_head.config.to_json()},
        "complexity_meaning": COMPLEXITY_MEANING,
    }
    (out / "labels.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
