"""`/v1/route` with the learned MiniLM classifier (CPU, PyTorch eager path): the gateway reports the
classifier's own category distribution, complexity and timing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from server.config import parse_config

from .conftest import RunningTriage, free_port, run_triage, sim_model


@pytest.fixture(scope="module")
def minilm() -> Iterator[RunningTriage]:
    config = parse_config(
        {
            "classifier": {"kind": "minilm", "device": "cpu", "impl": "eager"},
            "models": [sim_model("coder", ["code"], free_port()), sim_model("chat", ["chat"], free_port())],
        }
    )
    with run_triage(config) as running:
        yield running


def test_route_returns_learned_category_and_complexity(minilm: RunningTriage) -> None:
    from server.classify import MiniLMClassifier

    assert isinstance(minilm.gateway.classifier, MiniLMClassifier)  # no silent fallback to keywords
    body = {
        "messages": [
            {
                "role": "user",
                "content": "Write a Python function that merges two sorted lists and returns the merged list.",
            }
        ]
    }
    decision = httpx.post(minilm.base_url + "/v1/route", json=body, timeout=30).json()
    assert decision["category"] == "code"
    assert decision["model"] == "coder"
    scores = decision["category_scores"]
    assert len(scores) == 11 and abs(sum(scores.values()) - 1) < 1e-3
    assert scores["code"] == max(scores.values())
    assert 0.0 <= decision["complexity"] <= 1.0
    assert decision["classify_ms"] > 0
    assert decision["offers_choices"] is False
    body["messages"][0]["content"] = "Which gas do plants take in?\nA. Oxygen\nB. Carbon dioxide\nC. Neon"
    decision = httpx.post(minilm.base_url + "/v1/route", json=body, timeout=30).json()
    assert decision["offers_choices"] is True


def test_concurrent_generations_are_classified(minilm: RunningTriage) -> None:
    import concurrent.futures

    def ask(i: int) -> str:
        response = httpx.post(
            minilm.base_url + "/v1/chat/completions",
            timeout=60,
            json={"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": f"Question {i}: hi"}]},
        )
        assert response.status_code == 200, response.text
        return response.headers["x-triage-category"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        categories = list(pool.map(ask, range(16)))
    assert all(c != "unclassified" for c in categories)


async def test_the_classifier_reports_the_answer_format_with_the_embedding() -> None:
    from server.classify import MiniLMClassifier

    settings = parse_config(
        {"classifier": {"kind": "minilm", "device": "cpu", "impl": "eager"}, "models": [sim_model("m", ["chat"], 1)]}
    ).classifier
    classifier = MiniLMClassifier(settings)
    await classifier.start()
    try:
        options = await classifier.classify("Which gas do plants take in?\nA. Oxygen\nB. Carbon dioxide\nC. Neon")
        open_question = await classifier.classify("Plants take a gas from the air. Which one, and why?")
    finally:
        await classifier.stop()
    assert options.offers_choices and not open_question.offers_choices
    assert options.embedding is not None and open_question.embedding is not None
