"""The learned quality predictor inside the Triage policy: per-prompt probabilities replace profile quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.answer_format import quality_inputs
from models.calibration import Calibrator
from models.gate import GateConfig
from models.quality import QualityPredictor
from models.scorers import TrainSet, fit_scorer
from server.classify import Classification
from server.config import ConfigError, ModelConfig
from server.load import LoadBoard
from server.policy import RouteRequest

from .policykit import policy

LLAMA = "meta-llama/Meta-Llama-3-8B"
METAMATH = "meta-math/MetaMath-Mistral-7B"


def _model(name: str, predictor_model: str | None, quality: float = 0.5) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": name,
            "endpoints": [f"http://127.0.0.1:1/{name}/v1"],
            "gpu": name,
            "profile": {"quality_default": quality, "predictor_model": predictor_model},
        }
    )


def _embedding(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def test_predicted_probability_is_the_quality_term() -> None:
    models = [_model("llama", LLAMA), _model("metamath", METAMATH), _model("other", None, quality=0.42)]
    chooser = policy(models, LoadBoard(), quality_predictor="default")
    predictor = QualityPredictor.load()
    for seed in range(6):
        embedding, choices = _embedding(seed), seed % 2 == 0
        expected = predictor.predict(embedding.reshape(1, -1), np.array([choices]))[0]
        cls = Classification("math", {"math": 1.0}, 0.5, embedding, offers_choices=choices)
        decision = chooser.choose(RouteRequest(f"r{seed}", cls, 50, 128))
        terms = {c.model: c.terms["quality"] for c in decision.candidates}
        assert terms["llama"] == pytest.approx(expected[predictor.models.index(LLAMA)], abs=1e-4)
        assert terms["metamath"] == pytest.approx(expected[predictor.models.index(METAMATH)], abs=1e-4)
        assert terms["other"] == pytest.approx(0.42)
        # idle, identical engines: the better-predicted of the two mapped models wins
        best = "llama" if terms["llama"] > terms["metamath"] else "metamath"
        assert decision.model in (best, "other") and (decision.model == best or terms["other"] > terms[best])


def test_without_an_embedding_profile_quality_is_used() -> None:
    models = [_model("llama", LLAMA, quality=0.7), _model("metamath", METAMATH, quality=0.3)]
    chooser = policy(models, LoadBoard(), quality_predictor="default")
    decision = chooser.choose(RouteRequest("r", Classification("math", {"math": 1.0}, 0.5), 50, 128))
    assert {c.model: c.terms["quality"] for c in decision.candidates} == {"llama": 0.7, "metamath": 0.3}


def test_unknown_predictor_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="predictor_model"):
        policy([_model("x", "nobody/model-7b")], LoadBoard(), quality_predictor="default")
    with pytest.raises(ConfigError, match=r"no model has profile\.predictor_model"):
        policy([_model("x", None)], LoadBoard(), quality_predictor="default")


def test_a_closed_gate_gives_the_prior_so_the_best_overall_model_wins(tmp_path: Path) -> None:
    # llama answers kind-0 prompts, metamath is the better model overall; the gate closes far from both kinds
    rng = np.random.default_rng(0)
    centres = np.eye(384, dtype=np.float32)[:2]
    groups = np.repeat([0, 1], 40)
    emb = centres[groups] + 0.02 * rng.standard_normal((80, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.where(groups[:, None] == 0, [[1.0, 0.6]], [[0.0, 0.8]]).astype(np.float32)  # [80, 2]
    data = TrainSet(emb, scores, groups, ["k0", "k1"])
    scorer = fit_scorer({"kind": "knn", "k": 10, "local": 1.0}, data)
    gate = GateConfig("max_sim", "hard", 0.5)
    QualityPredictor(scorer, Calibrator.identity(2), [LLAMA, METAMATH], data.macro_mean(), {}, gate).save(tmp_path)
    models = [_model("llama", LLAMA), _model("metamath", METAMATH)]
    chooser = policy(models, LoadBoard(), quality_predictor=str(tmp_path))

    def decide(embedding: np.ndarray) -> tuple[str, dict[str, float]]:
        cls = Classification("math", {"math": 1.0}, 0.5, embedding)
        decision = chooser.choose(RouteRequest("r", cls, 50, 128))
        return decision.model, {c.model: c.terms["quality"] for c in decision.candidates}

    near = centres[0] + 0.02 * rng.standard_normal(384).astype(np.float32)
    model, terms = decide(near / np.linalg.norm(near))
    assert model == "llama" and terms["llama"] > 0.9
    model, terms = decide(_embedding(7))  # a random direction: like no training prompt
    assert model == "metamath"
    assert terms == pytest.approx({"llama": 0.5, "metamath": 0.7}, abs=1e-4)  # each model's overall rate


def test_the_answer_format_reaches_the_predictor(tmp_path: Path) -> None:
    # one topic asked two ways: llama answers the option-list prompts, metamath the open ones
    rng = np.random.default_rng(2)
    choices = np.tile([True, False], 40)
    emb = _embedding(3) + 0.02 * rng.standard_normal((80, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.where(choices[:, None], [[0.9, 0.3]], [[0.2, 0.8]]).astype(np.float32)
    data = TrainSet(quality_inputs(emb, choices, 2.0), scores, np.zeros(80, dtype=np.int64), ["t"])
    scorer = fit_scorer({"kind": "knn", "k": 20, "local": 1.0}, data)
    meta = {"inputs": {"answer_format_weight": 2.0}}
    QualityPredictor(scorer, Calibrator.identity(2), [LLAMA, METAMATH], data.macro_mean(), meta).save(tmp_path)
    chooser = policy(
        [_model("llama", LLAMA), _model("metamath", METAMATH)], LoadBoard(), quality_predictor=str(tmp_path)
    )
    prompt = _embedding(3)
    for offers_choices, winner in ((True, "llama"), (False, "metamath")):
        cls = Classification("math", {"math": 1.0}, 0.5, prompt, offers_choices=offers_choices)
        assert chooser.choose(RouteRequest("r", cls, 50, 128)).model == winner
