"""Where does a quality predictor send traffic that no outcome file covers? Route shares on unlabelled prompts.

The outcome data has benchmark prompts only (option-scored ARC, MMLU, CMMLU; generated GSM8K, HumanEval), so for
open-ended chat, writing or Chinese chat no setting can be scored: every predictor extrapolates. This script
shows how: for each kNN setting, fitted on the outcome file's training part exactly as `triage train-quality`
fits it (answer-format inputs, models/quality_eval.prepare), the share of each model among its routes for the
first `--per-source` prompts of each prompt source in the labelled prompt file (models/data.DEFAULT_PROMPTS),
beside the setting's held-out gains (argmax of the scorer's output: the shared Platt map the artifact uses is one
monotone map for every model, so it leaves the argmax as it is). It grades nothing: there is no ground truth
here, and the JSON says so.

Run (~1 min, embeddings cached): `PYTHONPATH=. python -m models.quality_extrapolation`
Writes models/artifacts/quality/extrapolation.json. Knows nothing about serving.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from models.answer_format import choice_flags, quality_inputs
from models.data import DEFAULT_PROMPTS, REPO_ROOT, load_prompts
from models.embed_cache import embed_cached
from models.encoder import EncoderConfig
from models.errors import DataError
from models.quality_cv import Fitter
from models.quality_eval import add_split_arguments, heldout_eval, prepare, with_answer_format
from models.scorers import spec_name

DEFAULT_OUT = REPO_ROOT / "models" / "artifacts" / "quality" / "extrapolation.json"
# chat, writing, role-play, Chinese chat, code requests, news summaries: traffic unlike the outcome benchmarks
SOURCES: tuple[str, ...] = (
    "sharegpt",
    "writingbench",
    "awesome_chatgpt_prompts",
    "belle_eval",
    "codealpaca",
    "p3_xsum",
)
# (answer-format weight, kNN setting)
SETTINGS: tuple[tuple[float, dict[str, Any]], ...] = (
    (0.0, {"kind": "knn", "k": 100, "local": 0.5, "group_power": 0.0}),  # shipped before the answer format
    (2.0, {"kind": "knn", "k": 100, "local": 0.25, "group_power": 0.0}),  # best inner criterion (experiment.json)
    (2.0, {"kind": "knn", "k": 400, "local": 0.5, "group_power": 1.0}),  # every benchmark weighs the same
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.quality_extrapolation", description=__doc__.splitlines()[0])
    add_split_arguments(p)
    p.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="unlabelled-by-outcome prompts (.jsonl[.gz])")
    p.add_argument("--sources", default=",".join(SOURCES), help="comma-separated prompt sources to read")
    p.add_argument("--per-source", type=int, default=400, help="prompts read per source")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device (cache misses)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enc = EncoderConfig(device=args.device)
    base = prepare(args.outcomes, enc, args.cache_dir, args.heldout_frac, args.seed, args.folds)
    prompts = load_prompts(args.prompts)
    emb = embed_cached(prompts.texts, enc, prompts.cache_id, args.cache_dir)  # [N, 384], cached with training
    wanted = [s for s in args.sources.split(",") if s]
    picked = {s: [i for i, src in enumerate(prompts.sources) if src == s][: args.per_source] for s in wanted}
    missing = [s for s, rows in picked.items() if not rows]
    if missing:
        raise DataError(f"{args.prompts} has no prompts from {missing}; pass --sources with sources it has")
    short = [m.split("/")[-1] for m in base.table.models]
    settings: dict[str, Any] = {}
    for weight, spec in SETTINGS:
        split = with_answer_format(base, weight)
        fitter = Fitter(split.data)
        held = heldout_eval(fitter, spec, "shared_platt", split).reports
        scorer = fitter.fit(spec, split.train)
        shares: dict[str, dict[str, float]] = {}
        for source, rows in picked.items():
            texts = [prompts.texts[i] for i in rows]
            x = quality_inputs(emb[rows], choice_flags(texts), weight)
            counts = Counter(short[j] for j in scorer.predict(x).argmax(axis=1))
            shares[source] = {m: round(c / len(rows), 3) for m, c in counts.most_common()}
        settings[f"{spec_name(spec)} answer_format_weight={weight:g}"] = {
            "spec": spec,
            "answer_format_weight": weight,
            "heldout_gain": {
                k: held[k]["average"]["benchmark_macro"]["routed_minus_best_single"] for k in ("id", "lobo")
            },
            "route_share": shares,
        }
    out = {
        "command": "python -m models.quality_extrapolation " + shlex.join(sys.argv[1:] if argv is None else argv),
        "what": __doc__.split("\n\n")[1].replace("\n", " "),
        "ground_truth": "none: these prompts have no outcomes; the shares describe behaviour, they do not grade it",
        "heldout_gain": "benchmark-macro gain over the best single model on the outcome file's held-out part, "
        "shared Platt calibration for every setting (train-quality picks each artifact's own map)",
        "n_per_source": {s: len(r) for s, r in picked.items()},
        "settings": settings,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({n: s["route_share"] for n, s in settings.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
