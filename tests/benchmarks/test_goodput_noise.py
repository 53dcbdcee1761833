"""goodput_noise.compare against a Monte-Carlo of the very draws it models."""

from __future__ import annotations

import numpy as np

from benchmarks.goodput_noise import Record, compare


def _records(n: int = 400) -> tuple[Record, Record, np.ndarray]:
    rng = np.random.default_rng(1)
    prompt = np.arange(n) % 150  # prompts repeat, as in a long trace
    scores = rng.uniform(0.1, 0.9, size=(150, 3))  # [P, M]
    model_a = rng.integers(0, 3, size=n)
    model_b = np.where(rng.random(n) < 0.5, model_a, rng.integers(0, 3, size=n))  # half the choices shared
    model_b[:10] = -1  # rejected
    good_a, good_b = rng.random(n) < 0.9, rng.random(n) < 0.8
    score_a = scores[prompt, model_a]
    score_b = np.where(model_b >= 0, scores[prompt, np.maximum(model_b, 0)], 0.0)
    return Record(prompt, model_a, score_a, good_a), Record(prompt, model_b, score_b, good_b), scores


def test_identical_records_have_no_draw_noise() -> None:
    a, _, _ = _records()
    out = compare(a, a)
    assert out["expected_ratio"] == 1.0 and out["draw_sd"] == 0.0
    assert out["prompt_bootstrap_95"] == [1.0, 1.0]


def test_draw_sd_matches_a_simulation_of_the_draws() -> None:
    a, b, scores = _records()
    out = compare(a, b)
    rng = np.random.default_rng(2)
    ratios = []
    for _ in range(4000):  # one draw per (request, model), shared by both policies, as make_trace draws them
        right = rng.random((len(a.prompt), scores.shape[1])) < scores[a.prompt]  # [N, M]
        rows = np.arange(len(a.prompt))
        hit_a = a.good & right[rows, a.model]
        hit_b = b.good & (b.model >= 0) & right[rows, np.maximum(b.model, 0)]
        ratios.append(hit_a.sum() / hit_b.sum())
    assert abs(out["expected_ratio"] - float(np.mean(ratios))) < 0.01
    assert abs(out["draw_sd"] - float(np.std(ratios))) < 0.1 * float(np.std(ratios))
    low, high = out["prompt_bootstrap_95"]
    assert low < out["expected_ratio"] < high
