"""End-to-end smoke runs of train-classifier and train-quality on tiny synthetic files (real encoder)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from models import quality_experiment, quality_extrapolation, train_classifier, train_quality
from models.classifier import PromptClassifier
from models.errors import DataError
from models.quality import QualityPredictor

CATS = {
    "code": [
        "Write a Python function to sort a list.",
        "Fix this JavaScript bug: undefined is not a function.",
    ],
    "math": ["What is 17 times 23?", "Solve for x: 2x + 3 = 11."],
    "creative_writing": ["Write a short poem about autumn.", "Write a story about a dragon who loves tea."],
}
MODELS = ["m1", "m2"]


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _outcomes(path: Path) -> None:
    rows = []
    for i in range(20):
        bench = "mathy" if i % 2 else "wordy"
        text = f"What is {i} plus {i + 1}?" if bench == "mathy" else f"Define the word number {i}."
        for m in MODELS:
            good = (m == "m1") == (bench == "mathy")
            rows.append(
                {
                    "prompt_id": f"{bench}:{i}",
                    "prompt": text,
                    "model": m,
                    "score": float(good),
                    "benchmark": bench,
                }
            )
    _write(path, rows)


def test_train_classifier_and_quality_end_to_end(tmp_path: Path) -> None:
    rows = [
        {
            "id": f"{c}-{s}-{i}",
            "prompt": t,
            "category": c,
            "source": f"src{s}",
            "label_method": "source_label",
        }
        for c, texts in CATS.items()
        for i, t in enumerate(texts)
        for s in (0, 1)
    ]
    _write(tmp_path / "p.jsonl.gz", rows)
    _outcomes(tmp_path / "o.jsonl.gz")
    common = [
        "--outcomes",
        str(tmp_path / "o.jsonl.gz"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--device",
        "cpu",
        "--epochs",
        "3",
    ]
    rc = train_classifier.main(
        [
            "--data",
            str(tmp_path / "p.jsonl.gz"),
            "--val-sources",
            "src1",
            "--out",
            str(tmp_path / "clf"),
            "--task-steps",
            "20",
            "--inner-folds",
            "2",
            "--static-chars",
            "40",
            "--min-ngram-families",
            "2",
            *common,
        ]
    )
    assert rc == 0
    metrics = json.loads((tmp_path / "clf" / "metrics.json").read_text())
    assert metrics["task"]["split"]["val_families"] == ["src1"] and metrics["task"]["n"] == 6
    assert metrics["task"]["tuning"]["candidates"] and "gold_only" in metrics["task"]
    clf = PromptClassifier.load(tmp_path / "clf")
    assert clf.labels == sorted(CATS) and clf.classify_batch(["hello"]).probs.shape == (1, 3)
    assert clf.task_head.config.static_chars == 40 and clf.task_head.config.dense_dim == 384 + 8 + 2 * 384

    quality_args = [
        *common[:-2],  # not --epochs: the scorer's settings come in --spec
        "--out",
        str(tmp_path / "q"),
        "--heldout-frac",
        "0.3",
        "--folds",
        "2",
        "--spec",
        json.dumps({"kind": "knn", "k": 3}),
    ]
    rc = train_quality.main(quality_args)
    assert rc == 0
    pred = QualityPredictor.load(tmp_path / "q")
    assert pred.models == MODELS and pred.meta["split"]["n_heldout"] == 6
    assert pred.answer_format_weight == pred.meta["inputs"]["answer_format_weight"] > 0  # the shipped default
    probs = pred.predict(np.eye(384, dtype=np.float32)[:2], np.array([True, False]))
    assert probs.shape == (2, 2)
    metrics = pred.meta["metrics_heldout"]
    # m1 is right on every "mathy" prompt and m2 on every "wordy" one: routing by neighbours is perfect
    assert metrics["id"]["average"]["benchmark_macro"]["routed"] == 1.0
    assert set(metrics["lobo"]["per_benchmark"]) == {"mathy", "wordy"}
    assert pred.meta["command"].startswith("triage train-quality ")
    assert (tmp_path / "q" / "reliability.png").is_file()


def test_quality_experiment_end_to_end(tmp_path: Path) -> None:
    _outcomes(tmp_path / "o.jsonl.gz")
    out = tmp_path / "experiment.json"
    args = ["--outcomes", str(tmp_path / "o.jsonl.gz"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    rc = quality_experiment.main([*args, "--quick", "--folds", "2", "--heldout-frac", "0.3", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    approaches = result["approaches"]
    assert {"constant", "knn", "mlp", "mf", "contrastive", "group_prior", "v1", "knn+mlp"} <= set(approaches)
    assert {"knn+gate(purity,hard)", "knn+gate(max_sim,soft)"} <= set(approaches)
    assert result["chosen"]["approach"] in approaches and result["chosen"]["margin"]
    for name, a in approaches.items():
        assert set(a["heldout"]) == ({"id", "lobo", "gate"} if "gate(" in name else {"id", "lobo"})
        assert "criterion" in a["inner"]
        assert a["calibration"]["method"] in ("none", "platt", "shared_platt", "isotonic")
        boot = a["heldout"]["id"]["average"]["benchmark_macro"]["bootstrap_gain"]
        assert boot["ci95"][0] <= boot["ci95"][1]
    assert result["command"].startswith("python -m models.quality_experiment --outcomes")
    stage0 = result["answer_format"]
    assert set(stage0["grid"]) == {"0.0", "0.5", "1.0", "2.0", "4.0"} and stage0["chosen_weight"] in (0, 0.5, 1, 2, 4)
    assert result["split"]["answer_format_weight"] == stage0["chosen_weight"]
    bounds = result["gate_bounds"]["heldout"]
    assert set(bounds) == {"ungated", "oracle_gate", "hindsight_benchmark_gate"}
    assert bounds["hindsight_benchmark_gate"]["lobo_gain"] >= max(b["lobo_gain"] for b in bounds.values()) - 1e-9


def test_quality_extrapolation_reports_route_shares_without_grading(tmp_path: Path) -> None:
    _outcomes(tmp_path / "o.jsonl.gz")
    chat = ["Write a short poem about the sea.", "Tell me a story about a brave cat.", "What should I cook tonight?"]
    rows = [{"id": f"c{i}", "prompt": t, "category": "creative_writing", "source": "chat"} for i, t in enumerate(chat)]
    _write(tmp_path / "p.jsonl.gz", rows)
    out = tmp_path / "extrapolation.json"
    args = ["--outcomes", str(tmp_path / "o.jsonl.gz"), "--prompts", str(tmp_path / "p.jsonl.gz"), "--sources", "chat"]
    common = ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--heldout-frac", "0.3", "--folds", "2"]
    assert quality_extrapolation.main([*args, *common, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ground_truth"].startswith("none") and result["n_per_source"] == {"chat": 3}
    assert len(result["settings"]) == len(quality_extrapolation.SETTINGS)
    for setting in result["settings"].values():
        shares = setting["route_share"]["chat"]
        assert set(shares) <= set(MODELS) and abs(sum(shares.values()) - 1) < 0.01
        assert set(setting["heldout_gain"]) == {"id", "lobo"}
    with pytest.raises(DataError, match="nowhere"):
        quality_extrapolation.main([*args[:-1], "nowhere", *common, "--out", str(out)])


def test_train_classifier_tunes_passage_augmentation_end_to_end(tmp_path: Path) -> None:
    story = (
        "The river flooded the valley town {k} after three days of rain. Shops along the main street closed and "
        "volunteers filled sandbags through the night. The water began to fall on Sunday morning, and officials "
        "said the bridge would stay shut until engineers had inspected it. Farmers counted their losses. "
    )
    rows = []
    for s in range(3):
        for k in range(4):
            texts = {
                "summarization": f"Summarize the article below.\n\nArticle: {story.format(k=f'{s}{k}')}",
                "classification": f"Is this review positive or negative?\nReview: nice lamp {s}{k}",
                "general_qa": f"What is the capital of country number {s}{k}?",
            }
            rows += [
                {"id": f"{c}-{s}-{k}", "prompt": t, "category": c, "source": f"src{s}", "label_method": "source_label"}
                for c, t in texts.items()
            ]
    _write(tmp_path / "p.jsonl.gz", rows)
    _outcomes(tmp_path / "o.jsonl.gz")
    args = ["--data", str(tmp_path / "p.jsonl.gz"), "--outcomes", str(tmp_path / "o.jsonl.gz")]
    args += ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--epochs", "3", "--out", str(tmp_path / "c")]
    args += ["--val-sources", "src2", "--task-steps", "20", "--inner-folds", "2", "--augment-pool", "12"]
    assert train_classifier.main([*args, "--tune", "--tune-keys", "augment_passages"]) == 0
    task = json.loads((tmp_path / "c" / "metrics.json").read_text())["task"]
    assert [r["changes"] for r in task["tuning"]["candidates"]][:3] == [
        {},
        {"augment_passages": 0.5},
        {"augment_passages": 1.0},
    ]
    # 12 // 4 categories = 3 each of classification and general_qa (extraction, reasoning: no rows here)
    assert task["augmentation"]["pools"]["augment_passages"] == {"variants": 6, "used": 0}  # inner CV: all tie
    clf = PromptClassifier.load(tmp_path / "c")
    assert clf.task_head.config.dense_dim == 384 + 8  # training-only rows: the served inputs are unchanged
