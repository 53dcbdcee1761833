"""eval-routing numbers on tiny synthetic outcomes: oracle, best single, random, routed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from models.calibration import Calibrator
from models.eval_routing import main, routing_report
from models.gate import GateConfig
from models.quality import QualityPredictor
from models.scorers.prior import ConstantScorer

MODELS = ["a", "b", "c"]
# prompts x models: b is the best single model, the oracle takes the best per row
SCORES = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32)
BENCH = ["x", "x", "x", "y", "y", "y"]


def test_routing_report_numbers() -> None:
    chosen = np.array([0, 1, 2, 0, 2, 0])  # right on 5 of 6
    r = routing_report(SCORES, chosen, BENCH, MODELS)
    pw = r["average"]["prompt_weighted"]
    assert pw["oracle"] == 1.0
    assert pw["best_single"] == {"model": "b", "accuracy": round(4 / 6, 4)}
    assert pw["random"] == round(SCORES.mean(), 4)
    assert pw["routed"] == round(5 / 6, 4)
    assert r["per_benchmark"]["x"]["best_single"]["model"] == "b"
    assert r["per_benchmark"]["y"]["single"] == {
        "a": round(1 / 3, 4),
        "b": round(2 / 3, 4),
        "c": round(1 / 3, 4),
    }
    assert r["average"]["benchmark_macro"]["oracle"] == 1.0


def _write_outcomes(path: Path) -> None:
    texts = [
        "What is 2 + 2?",
        "Write a haiku.",
        "Sort a list in Python.",
        "Capital of Peru?",
        "Name a prime.",
        "Define entropy.",
    ]
    with gzip.open(path, "wt") as f:
        for i, (row, bench) in enumerate(zip(SCORES, BENCH, strict=True)):
            for m, s in zip(MODELS, row, strict=True):
                f.write(
                    json.dumps(
                        {
                            "prompt_id": f"{bench}:{i}",
                            "prompt": texts[i],
                            "model": m,
                            "score": str(s),
                            "benchmark": bench,
                        }
                    )
                    + "\n"
                )


@pytest.mark.parametrize(
    ("prior", "gate", "routed_to"),
    [
        ([0.2, 0.9, 0.3], GateConfig(), "b"),  # a constant predictor always routes to its argmax
        ([0.5, 0.5, 0.5], GateConfig(), "c"),  # all tied: the model with the best training average ("overall") wins
        # a gate that always closes (no margin reaches 1): every prompt gets the prior, i.e. the best overall
        ([0.2, 0.9, 0.3], GateConfig("margin", "hard", 1.0), "c"),
    ],
)
def test_cli_on_synthetic_outcomes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prior: list[float], gate: GateConfig, routed_to: str
) -> None:
    meta = {"max_tokens": 64, "encoder_model": "", "split": {"seed": 0, "heldout_frac": 0.5}}
    scorer = ConstantScorer(np.array(prior, dtype=np.float32))
    overall = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    QualityPredictor(scorer, Calibrator.identity(3), MODELS, overall, meta, gate).save(tmp_path / "pred")
    _write_outcomes(tmp_path / "o.jsonl.gz")
    rc = main(
        [
            "--outcomes",
            str(tmp_path / "o.jsonl.gz"),
            "--predictor",
            str(tmp_path / "pred"),
            "--split",
            "all",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    pw = out["average"]["prompt_weighted"]
    assert pw["n"] == 6 and pw["oracle"] == 1.0 and pw["best_single"]["accuracy"] == round(4 / 6, 4)
    assert pw["route_share"][routed_to] == 1.0
    assert pw["routed"] == round(float(SCORES[:, MODELS.index(routed_to)].mean()), 4)
    macro = out["average"]["benchmark_macro"]
    assert set(macro) >= {"routed", "single", "best_single", "random", "oracle", "routed_minus_best_single"}
    assert set(out["per_benchmark"]) == {"x", "y"} and set(out["calibration"]["ece"]) == set(MODELS)
    assert out["gate"]["signal"] == gate.signal
    assert out["gate"]["closed_share"] == (0.0 if gate.is_open else 1.0)
    # a constant 0.5 for model "b" whose mean score is 4/6 is off by 1/6 in every bin it fills
    if routed_to == "c" and gate.is_open:
        assert out["calibration"]["ece"]["b"] == pytest.approx(abs(0.5 - 4 / 6), abs=1e-3)
