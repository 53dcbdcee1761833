"""routing_value.py --export-trace: the held-out workload as a gpu_replay trace for the GPU check's engines, read
back with gpu_replay's loader, checked against the outcomes file, and turned into valid router configs."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import gpu_replay, routing_value, routing_value_trace
from benchmarks.gpu_stack import CONFIG
from models.data import load_outcomes
from models.splits import heldout_mask
from server.config import CATEGORIES, parse_config

from .test_routing_value import MODELS, write_outcomes


def export(tmp_path: Path, rates: str = "4,16", duration: str = "2") -> tuple[Path, Path]:
    outcomes, trace = tmp_path / "outcomes.jsonl.gz", tmp_path / "data" / gpu_replay.TRACE_NAME
    write_outcomes(outcomes)
    argv = ["--outcomes", str(outcomes), "--export-trace", str(trace), "--trace-rates", rates]
    assert routing_value.main([*argv, "--trace-duration", duration]) == 0
    return outcomes, trace


def test_exported_trace_matches_the_outcomes_file(tmp_path: Path) -> None:
    outcomes, path = export(tmp_path)
    trace = gpu_replay.load_trace(path)
    engines = routing_value_trace.check_engines(CONFIG)
    assert list(trace["engines"]) == engines == ["coder", "chat"]
    assert len(set(trace["engines"].values())) == 2 and set(trace["engines"].values()) <= set(MODELS)
    table = load_outcomes(outcomes)
    heldout = heldout_mask(table.prompt_ids, table.benchmarks, 0.2, 0)  # train-quality's default: another file
    train = np.flatnonzero(~heldout)
    best = table.models[int(table.scores[train].mean(axis=0).argmax())]
    assert trace["engines"]["coder"] == best  # the first engine stands in for the best single model
    assert set(trace["static_roles"]) == set(CATEGORIES) and set(trace["static_roles"].values()) <= set(engines)
    scores_of: dict[str, list[np.ndarray]] = {}
    for p, text in enumerate(table.texts):
        scores_of.setdefault(text, []).append(table.scores[p])
    held_texts = {table.texts[p] for p in np.flatnonzero(heldout)}
    column = {e: table.models.index(m) for e, m in trace["engines"].items()}
    assert [b["rate"] for b in trace["rates"]] == [4.0, 16.0]
    checked = 0
    for block in trace["rates"]:
        requests = block["requests"]
        assert len(requests) == math.ceil(block["rate"] * 2)
        arrivals = [r["at_s"] for r in requests]
        assert arrivals == sorted(arrivals) and arrivals[-1] <= block["duration_s"] and block["duration_s"] >= 2
        for r in requests:
            assert r["prompt"] in held_texts and r["max_tokens"] >= 1 and set(r["correct"]) <= set(engines)
            rows = scores_of[r["prompt"]]
            if len(rows) == 1:  # the synthetic scores are 0 or 1: correctness is the stand-in's recorded outcome
                assert r["correct"] == [e for e in engines if rows[0][column[e]] == 1.0]
                checked += 1
    assert checked >= 20


def test_trace_becomes_valid_router_configs(tmp_path: Path) -> None:
    _, path = export(tmp_path)
    trace = gpu_replay.load_trace(path)
    base = yaml.safe_load(CONFIG.read_text())
    engines = {m["name"]: f"http://127.0.0.1:{m['launch']['port']}" for m in base["models"]}
    for policy in gpu_replay.ROUTER_PORTS:
        config = parse_config(gpu_replay.router_config(base, trace, policy, engines, tmp_path), policy)
        assert config.policy.name == policy
        quality = {m.name: m.profile.quality for m in config.models}
        assert quality == {e: trace["quality"][e] for e in engines}


def test_trace_stays_small_and_refuses_to_grow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = export(tmp_path)
    assert path.stat().st_size < 64 * 1024 and json.loads(gzip.decompress(path.read_bytes()))["rates"]
    monkeypatch.setattr(routing_value_trace, "MAX_TRACE_BYTES", 100)
    (tmp_path / "again").mkdir()
    with pytest.raises(routing_value_trace.TraceTooLarge):
        export(tmp_path / "again")
    assert not (tmp_path / "again" / "data").exists()  # nothing half-written for prepare_device.sh to carry
