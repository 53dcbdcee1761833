"""The keyword classifier and the static task-routing policy, without HTTP."""

from __future__ import annotations

import pytest

from server.classify import KeywordClassifier
from server.config import parse_config
from server.errors import EngineUnavailable, NoEligibleModel, RateLimited
from server.load import LoadBoard
from server.policy import POLICIES, RouteRequest
from server.protocol import RouteOptions


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Write a Python function to reverse a linked list", "code"),
        ("Solve the equation 3x + 5 = 20", "math"),
        ("Write a poem about the sea", "creative_writing"),
        ("Summarize this article in three key points", "summarization"),
        ("Translate 'good morning' into French", "translation_multilingual"),
        ("这个问题怎么解决？", "translation_multilingual"),
        ("What is the capital of Australia?", "general_qa"),
    ],
)
def test_keyword_classifier(text: str, category: str) -> None:
    result = KeywordClassifier().classify_now(text)
    assert result.category == category
    assert abs(sum(result.category_scores.values()) - 1) < 1e-9
    assert 0 <= result.complexity <= 1


def _policy(**policy: object):  # type: ignore[no-untyped-def]
    config = parse_config(
        {
            "policy": {"name": "static", **policy},
            "models": [
                {"name": "coder", "roles": ["code"], "endpoints": ["http://127.0.0.1:1/v1"], "max_in_flight": 2},
                {"name": "chat", "roles": ["chat"], "endpoints": ["http://127.0.0.1:2/v1"], "capabilities": ["tools"]},
                {"name": "fast", "roles": ["fast"], "endpoints": ["http://127.0.0.1:3/v1"], "context_length": 1024},
                {
                    "name": "cloud",
                    "roles": ["chat"],
                    "endpoints": ["https://api.example.com/v1"],
                    "remote": True,
                    "kind": "openai",
                },
            ],
        }
    )
    load = LoadBoard()
    return POLICIES["static"](config.models, load, config.policy), load


def _request(text: str, **kwargs: object) -> RouteRequest:
    fields: dict[str, object] = {"prompt_tokens": 10, "max_output_tokens": 10, **kwargs}
    return RouteRequest("r", KeywordClassifier().classify_now(text), **fields)  # type: ignore[arg-type]


def test_category_goes_to_role_and_remote_is_excluded_by_default() -> None:
    policy, _ = _policy()
    decision = policy.choose(_request("Write a Python function"))
    assert decision.model == "coder" and not decision.overflow
    cloud = next(c for c in decision.candidates if c.model == "cloud")
    assert not cloud.eligible and cloud.reason == "remote not allowed"


def test_busy_role_model_still_wins_static_routing_until_its_cap() -> None:
    policy, load = _policy()
    load.started("coder", 60, 40)
    assert policy.choose(_request("Write a Python function")).model == "coder"
    load.started("coder", 60, 40)  # at cap (2)
    decision = policy.choose(_request("Write a Python function"))
    assert decision.model != "coder"


def test_context_and_capabilities_rule_models_out() -> None:
    policy, _ = _policy()
    decision = policy.choose(_request("What is the capital of France?", prompt_tokens=2000))
    assert decision.model != "fast"
    decision = policy.choose(_request("Write a Python function", needs=frozenset({"tools"})))
    assert decision.model == "chat"


def test_no_eligible_model_errors() -> None:
    policy, load = _policy()
    with pytest.raises(NoEligibleModel):
        policy.choose(_request("hi", needs=frozenset({"vision"})))
    for name in ("coder", "chat", "fast"):
        load.mark_unhealthy(name, "down")
    with pytest.raises(EngineUnavailable):
        policy.choose(_request("hi"))
    only_coder = RouteOptions(models=["coder"])
    load.mark_healthy("coder")
    load.started("coder", 1, 0)
    load.started("coder", 1, 0)
    with pytest.raises(RateLimited):
        policy.choose(_request("hi", options=only_coder))


def test_remote_used_only_when_allowed() -> None:
    policy, load = _policy(allow_remote=True)
    for name in ("coder", "chat", "fast"):
        load.mark_unhealthy(name, "down")
    decision = policy.choose(_request("hi"))
    assert decision.model == "cloud" and decision.overflow
    with pytest.raises(EngineUnavailable):  # the request opted out: nothing healthy is left
        policy.choose(_request("hi", options=RouteOptions(allow_remote=False)))


def test_policy_allow_remote_false_is_a_ceiling_no_request_lifts() -> None:
    policy, load = _policy()  # policy.allow_remote defaults to false
    for name in ("coder", "chat", "fast"):
        load.mark_unhealthy(name, "down")
    with pytest.raises(EngineUnavailable):
        policy.choose(_request("hi", options=RouteOptions(allow_remote=True)))
