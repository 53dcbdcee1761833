"""Answer format: the surface rule, the predictor's input built from it, and a predictor that routes by it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.answer_format import TAIL_CHARS, choice_flags, offers_choices, quality_inputs
from models.calibration import Calibrator
from models.quality import QualityPredictor
from models.scorers import TrainSet, fit_scorer

CHOICE_PROMPTS = [
    "What are the dimensions of u?\nA. T x k\nB. T x 1\nC. k x 1\nD. 1 x 1",  # MMLU
    "运行中变压器温度最高的部分是\nA. 绕组\nB. 变压器油\nC. 引线\nD. 铁芯\n答案：",  # CMMLU
    "Question:Which relationship is mutualistic?\nAnswer:",  # ARC, completion style
    "Which sentence has the correct adjective order:\nOptions:\n(A) big old ship\n(B) old big ship",  # BBH
    "Pick one.\n  A) red\n  B) blue\n",  # indented
    "Is this review positive or negative? Great film.\nanswer :  ",
]
OPEN_PROMPTS = [
    "Natalia sold clips to 48 of her friends in April. How many clips did she sell?",  # GSM8K
    'def concatenate(strings):\n    """ Concatenate list of strings into a single string """\n',  # HumanEval
    "A: Hi, how are you?\nB: Fine, thanks.\nSummarise this dialogue.",  # speakers, not options
    "A. One heading only\nWrite an essay about it.",
    "Answer: 42. Now explain why this is the answer to everything.",  # an answer slot only counts at the end
    "",
]


@pytest.mark.parametrize("text", CHOICE_PROMPTS)
def test_option_lists_and_answer_slots_are_choices(text: str) -> None:
    assert offers_choices(text)


@pytest.mark.parametrize("text", OPEN_PROMPTS)
def test_open_questions_code_and_dialogues_are_not(text: str) -> None:
    assert not offers_choices(text)


def test_only_the_tail_is_read_so_long_prompts_stay_cheap() -> None:
    options = "\nA. yes\nB. no"
    assert offers_choices("x" * 200_000 + options)
    assert not offers_choices(options + "\n" + "x" * TAIL_CHARS)  # options far from the end: not scanned
    flags = choice_flags([CHOICE_PROMPTS[0], OPEN_PROMPTS[0]])
    assert flags.dtype == bool and flags.tolist() == [True, False]


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_inputs_are_unit_rows_whose_cosine_adds_the_format_match() -> None:
    emb = _unit(4, 16, 0)
    choices = np.array([True, True, False, False])
    assert quality_inputs(emb, choices, 0.0) is emb  # weight 0: the predictor reads the embedding alone
    x = quality_inputs(emb, choices, 2.0)
    assert x.shape == (4, 18) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    cos = emb @ emb.T
    same = (choices[:, None] == choices[None, :]).astype(np.float32)
    np.testing.assert_allclose(x @ x.T, (cos + 4.0 * same) / 5.0, atol=1e-5)
    with pytest.raises(ValueError, match="answer-format flags"):
        quality_inputs(emb, choices[:3], 2.0)


def _format_flips_the_ranking(weight: float) -> tuple[QualityPredictor, np.ndarray, np.ndarray]:
    """Training prompts of two topics, each asked both ways; model 0 answers option prompts, model 1 open ones."""
    rng = np.random.default_rng(1)
    topics = np.eye(32, dtype=np.float32)[:2]
    topic = np.repeat([0, 1], 60)
    choices = np.tile([True, False], 60)
    emb = topics[topic] + 0.05 * rng.standard_normal((120, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.where(choices[:, None], [[0.9, 0.2]], [[0.3, 0.8]]).astype(np.float32)
    data = TrainSet(quality_inputs(emb, choices, weight), scores, topic, ["t0", "t1"])
    scorer = fit_scorer({"kind": "knn", "k": 30, "local": 1.0}, data)
    meta = {"inputs": {"answer_format_weight": weight}}
    predictor = QualityPredictor(
        scorer, Calibrator.identity(2), ["options-model", "open-model"], data.macro_mean(), meta
    )
    queries = topics[np.repeat([0, 1], 10)] + 0.05 * rng.standard_normal((20, 32)).astype(np.float32)
    return predictor, queries / np.linalg.norm(queries, axis=1, keepdims=True), np.tile([True, False], 10)


def test_a_predictor_trained_with_the_format_routes_by_it(tmp_path: Path) -> None:
    blind, emb, choices = _format_flips_the_ranking(0.0)
    right = ["options-model" if c else "open-model" for c in choices]
    # the embedding alone cannot tell the two apart: about half of the prompts go to the wrong model
    assert sum(a == b for a, b in zip(blind.route(emb), right, strict=True)) <= 13
    aware, emb, choices = _format_flips_the_ranking(2.0)
    assert aware.route(emb, choices) == right
    with pytest.raises(ValueError, match="choice_flags"):
        aware.predict(emb)  # the format is part of its input: leaving it out is an error, not a guess
    aware.save(tmp_path)
    again = QualityPredictor.load(tmp_path)
    assert again.answer_format_weight == 2.0
    np.testing.assert_allclose(again.predict(emb, choices), aware.predict(emb, choices), atol=1e-3)
