"""The routing_value workload written down as a `gpu_replay` trace, for the GPU check's real engines.

    python benchmarks/routing_value.py --export-trace .vllm/data/routing_value_trace.json.gz

What is exported (format: `benchmarks/gpu_replay.py`): the held-out prompts of the outcomes file (the shipped quality
predictor's split when it was trained on that file, else train-quality's default rule), a bounded seeded sample of
them per rate (`outcomes_workload.make_trace`: Poisson arrivals, answer lengths per benchmark family, correctness
drawn once per request from the file's scores), at two rates. The GPU check serves two or three small dummy-weight
engines (`configs/gpu-dummy.yaml`: `coder`, `chat`), not the file's models, so each engine STANDS IN for one model
of the file: the first engine for the best single model on the training part, each further one for the model that
adds most to per-category routing among the stand-ins chosen so far (greedy, training part). A request's `correct`
lists the engines whose stand-in answered it correctly; `quality` and `static_roles` are the stand-ins' mean
training scores per category, with categories from the keyword classifier, the one both replay routers use.
`max_tokens` is the drawn answer length: a dummy-weight engine practically never emits end-of-sequence, so it
writes exactly that many tokens and the answer lengths of the simulation carry over.

What a replay of it can show: how each router spreads real load over real engines of different speeds, the
TTFT SLO attainment and useful goodput that result, with correctness credited from the file's ground truth. What it
cannot: the answers are noise (dummy weights), so "correct" is the stand-in model's recorded outcome, not the
engine's; the engines are much smaller and faster than the 7-8B pool of routing_value.py, so the same rate loads
them far less; the routers classify with the keyword classifier and price quality from per-category profiles, not
the MiniLM classifier and learned predictor routing_value.py grades; prompts longer than `MAX_PROMPT_CHARS` are cut.

Knows nothing about routers, engines' speeds or policies.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import outcomes_workload as workload
from server.classify import KeywordClassifier
from server.config import CATEGORIES

DEFAULT_RATES = (8.0, 32.0)  # req/s: light, and a few times the light load (the check's engines are small)
DEFAULT_DURATION_S = 10.0  # per rate: the replay step has ~90 s for two routers x two rates
MAX_PROMPT_CHARS = 4096  # the check's engines serve max_model_len 8192; gpu_stack cuts prompts to 4096 bytes too
MAX_TRACE_BYTES = 1 << 20  # what travels to the GPU machine is 64 MiB in all, the vLLM bundle most of it
SLO_TTFT_MS = 1000.0
DEFAULT_SPLIT = {"heldout_frac": 0.2, "seed": 0}  # models/train_quality.py's defaults


def check_engines(config: Path) -> list[str]:
    """The model names of the GPU check's config, in its order (the engines it starts)."""
    import yaml

    return [str(m["name"]) for m in yaml.safe_load(config.read_text())["models"]]


class TraceTooLarge(RuntimeError):
    """The gzipped trace exceeds MAX_TRACE_BYTES."""


def split_of(table: Any) -> tuple[dict[str, Any], str]:
    """(heldout_frac and seed, where they come from): the shipped predictor's when it was trained on this file."""
    from models.quality import DEFAULT_QUALITY_ARTIFACT

    meta_path = DEFAULT_QUALITY_ARTIFACT / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("data", {}).get("outcomes_sha256") == table.sha256:
            split = meta["split"]
            return {"heldout_frac": split["heldout_frac"], "seed": split["seed"]}, "the shipped quality predictor's"
    return dict(DEFAULT_SPLIT), "train-quality's default rule (the shipped predictor was trained on another file)"


def stand_ins(scores: np.ndarray, categories: list[str], models: list[str], n: int) -> list[str]:
    """n models of the file, greedy: the best single one, then each the one that raises per-category routing's
    training accuracy most. scores [T, M] training rows; categories [T] their keyword categories."""
    if n > len(models):
        raise ValueError(f"{n} engines but the outcomes file has only {len(models)} models")
    cats = sorted(set(categories))
    rows = {c: np.array([k for k, x in enumerate(categories) if x == c]) for c in cats}
    means = np.stack([scores[rows[c]].mean(axis=0) for c in cats])  # [C, M]
    weight = np.array([len(rows[c]) for c in cats], dtype=np.float64)  # [C]
    chosen: list[int] = []
    for _ in range(n):
        gains = [
            -1.0 if j in chosen else float((means[:, [*chosen, j]].max(axis=1) * weight).sum())
            for j in range(len(models))
        ]
        chosen.append(int(np.argmax(gains)))
    return [models[j] for j in chosen]


def export(
    outcomes: Path,
    out: Path,
    engines: list[str],
    rates: tuple[float, ...] = DEFAULT_RATES,
    duration_s: float = DEFAULT_DURATION_S,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the trace to `out` (gzipped when it ends in .gz); a brief of what was written."""
    from models.data import load_outcomes
    from models.splits import heldout_mask

    table = load_outcomes(outcomes)
    split, split_origin = split_of(table)
    heldout = heldout_mask(table.prompt_ids, table.benchmarks, split["heldout_frac"], split["seed"])
    keyword = KeywordClassifier()
    category = [keyword.classify_now(t).category for t in table.texts]  # [P] what the replay's routers see
    train = np.flatnonzero(~heldout)
    models = list(table.models)
    picked = stand_ins(table.scores[train], [category[p] for p in train], models, len(engines))
    column = {e: models.index(m) for e, m in zip(engines, picked, strict=True)}
    quality: dict[str, dict[str, float]] = {e: {} for e in engines}
    static_roles: dict[str, str] = {}
    overall = {e: float(table.scores[train, j].mean()) for e, j in column.items()}
    for c in CATEGORIES:
        rows = [p for p in train if category[p] == c]
        if not rows:
            static_roles[c] = max(overall, key=overall.__getitem__)
            continue
        for e, j in column.items():
            quality[e][c] = round(float(table.scores[rows, j].mean()), 4)
        static_roles[c] = max(engines, key=lambda e: quality[e][c])
    blocks: list[dict[str, Any]] = []
    test = np.flatnonzero(heldout)
    for rate in rates:
        n = max(1, math.ceil(rate * duration_s))
        # make_trace cycles through every held-out prompt; hand it a seeded sample of n of them
        rng = np.random.default_rng(seed + round(rate * 10))
        sample = np.zeros(len(table.prompt_ids), dtype=bool)
        sample[rng.choice(test, size=min(n, len(test)), replace=False)] = True
        work = workload.Workload(table, sample, [], [])  # make_trace reads neither classifications nor tokens
        requests = workload.make_trace(work, rate, duration_s, seed + round(rate * 10))[:n]
        blocks.append(
            {
                "rate": rate,
                "duration_s": round(max(duration_s, requests[-1].arrival_s), 3),
                "requests": [
                    {
                        "at_s": round(r.arrival_s, 3),
                        "prompt": table.texts[r.prompt][:MAX_PROMPT_CHARS],
                        "max_tokens": r.output_tokens,
                        "correct": [e for e in engines if models[column[e]] in r.correct],
                    }
                    for r in requests
                ],
            }
        )
    trace = {
        "source": f"{outcomes.name} (sha256 {table.sha256[:12]}): held-out prompts ({split_origin} split, "
        f"{int(heldout.sum())} of {len(heldout)}), correctness drawn from the file's scores of each engine's stand-in",
        "engines": {e: models[j] for e, j in column.items()},
        "quality": quality,
        "static_roles": static_roles,
        "slo_ttft_ms": SLO_TTFT_MS,
        "rates": blocks,
    }
    data = gzip.compress(json.dumps(trace).encode(), mtime=0) if out.suffix == ".gz" else json.dumps(trace).encode()
    if len(data) > MAX_TRACE_BYTES:
        raise TraceTooLarge(f"trace is {len(data)} bytes, over {MAX_TRACE_BYTES}; export fewer rates or seconds")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return {
        "trace": str(out),
        "bytes": len(data),
        "engines": trace["engines"],
        "requests": {b["rate"]: len(b["requests"]) for b in blocks},
    }
