"""Every documented error: OpenAI's error shape, the right status, and a message that says what to fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from server.config import parse_config
from server.errors import (
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    Forbidden,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    RequestTooLarge,
    Unauthorized,
    http_error,
    retry_after,
)

from .conftest import RunningTriage, free_port, run_triage, sim_model


def assert_openai_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return dict(error)


def post(triage: RunningTriage, body: Any, path: str = "/v1/chat/completions", **kwargs: Any) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(triage.base_url + path, content=body, timeout=20, **kwargs)
    return httpx.post(triage.base_url + path, json=body, timeout=20, **kwargs)


def test_malformed_json(triage: RunningTriage) -> None:
    assert_openai_error(post(triage, b'{"model": "auto", "messages": ['), 400, "not valid JSON")


def test_body_not_an_object(triage: RunningTriage) -> None:
    assert_openai_error(post(triage, b"[1, 2]"), 400, "JSON object")


def test_empty_body(triage: RunningTriage) -> None:
    assert_openai_error(post(triage, b""), 400, "empty")


def test_missing_messages(triage: RunningTriage) -> None:
    error = assert_openai_error(post(triage, {"model": "auto"}), 400, "messages")
    assert error["param"] == "messages"


def test_empty_messages(triage: RunningTriage) -> None:
    assert_openai_error(post(triage, {"model": "auto", "messages": []}), 400, "messages")


def test_wrong_types(triage: RunningTriage) -> None:
    error = assert_openai_error(
        post(triage, {"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}),
        400,
        "max_tokens",
    )
    assert error["param"] == "max_tokens"
    assert_openai_error(post(triage, {"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}), 400, "role")
    assert_openai_error(post(triage, {"model": "auto", "prompt": {"a": 1}}, "/v1/completions"), 400, "prompt")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "yes"),
        ("max_tokens", "2"),
        ("max_tokens", 2.0),
        ("max_tokens", True),
        ("n", "1"),
        ("temperature", "0.5"),
        ("model", 7),
        ("stream_options", {"include_usage": "true"}),
        ("route", {"allow_remote": "false"}),
    ],
)
def test_strict_types_on_the_fields_the_router_reads(triage: RunningTriage, field: str, value: Any) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, field: value}
    error = assert_openai_error(post(triage, body), 400, field)
    assert str(error["param"]).startswith(field)
    streamed = post(triage, {**body, "stream": True} if field != "stream" else body)
    assert streamed.headers["content-type"].startswith("application/json")  # an error, never an empty stream


def test_unknown_fields_are_still_relayed_under_strict_types(triage: RunningTriage) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "top_k": "lax?"}
    assert post(triage, body).status_code == 200  # not ours to judge: the engine (here the simulator) ignores it


def test_bad_route_options(triage: RunningTriage) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "route": {"priorty": "speed"}}
    assert_openai_error(post(triage, body), 400, "route.priorty")


def test_oversize_body(triage: RunningTriage) -> None:
    huge = "x" * (triage.config.server.max_body_bytes + 10)
    assert_openai_error(post(triage, {"model": "auto", "messages": [{"role": "user", "content": huge}]}), 413, "limit")


def test_unknown_model_is_404_through_the_sdk(triage: RunningTriage) -> None:
    client = openai.OpenAI(base_url=triage.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    assert "gpt-17" in str(caught.value) and "auto" in str(caught.value)


def test_unknown_route_and_method(triage: RunningTriage) -> None:
    assert_openai_error(httpx.get(triage.base_url + "/v2/nothing"), 404, "/v1")
    assert_openai_error(httpx.get(triage.base_url + "/v1/chat/completions"), 405, "GET")


def test_no_eligible_model(triage: RunningTriage) -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    assert_openai_error(post(triage, body), 400, "lacks tools")


@pytest.fixture(scope="module")
def broken() -> Iterator[RunningTriage]:
    """One engine that is down (nothing listens) and one that hangs, with short timeouts."""
    down = {"name": "down", "roles": ["chat"], "endpoints": [f"http://127.0.0.1:{free_port()}/v1"]}
    hanging = sim_model("hanging", ["fast"], free_port(), faults={"hang": True})
    hanging["timeouts"] = {"first_token_s": 0.5, "total_s": 1.0}
    failing = sim_model("failing", ["code"], free_port(), faults={"error_rate": 1.0})
    with run_triage(parse_config({"models": [down, hanging, failing]})) as running:
        yield running


def test_engine_down_is_503(broken: RunningTriage) -> None:
    # The probe has marked it unhealthy: the request fails fast with a message naming the engine.
    error = assert_openai_error(
        post(broken, {"model": "down", "messages": [{"role": "user", "content": "x"}]}), 503, "down"
    )
    assert error["type"] == "engine_unavailable"


def test_engine_timeout_is_504(broken: RunningTriage) -> None:
    for stream in (False, True):
        body = {"model": "hanging", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
        error = assert_openai_error(post(broken, body), 504, "hanging")
        assert error["type"] == "engine_timeout"


def test_engine_5xx_is_502(broken: RunningTriage) -> None:
    body = {"model": "failing", "messages": [{"role": "user", "content": "x"}]}
    assert_openai_error(post(broken, body), 502, "failing")


@pytest.mark.parametrize(
    ("error", "status", "anthropic_type"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (Unauthorized("who"), 401, "authentication_error"),
        (Forbidden("no"), 403, "permission_error"),
        (ModelNotFound("none"), 404, "not_found_error"),
        (RequestTooLarge("big"), 413, "request_too_large"),
        (RateLimited("slow down"), 429, "rate_limit_error"),
        (EngineUnavailable("down"), 529, "overloaded_error"),
        (EngineTimeout("late"), 504, "timeout_error"),
        (EngineError("broke", status=500), 502, "api_error"),
        (ValueError("a bug"), 500, "api_error"),
    ],
)
def test_the_anthropic_dialect_of_every_error(error: Exception, status: int, anthropic_type: str) -> None:
    answer = http_error(error, "POST /v1/messages", "anthropic")
    body = orjson.loads(answer.body)
    assert answer.status == status and body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == anthropic_type and body["error"]["message"]
    if isinstance(error, RateLimited):
        assert answer.headers["retry-after"] == "1"
    openai_answer = http_error(error, "POST /v1/chat/completions")
    assert set(orjson.loads(openai_answer.body)["error"]) == {"message", "type", "param", "code"}


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    # a breaker about to close (0.2 s left) must not tell clients to retry at once
    assert retry_after(0.2) == {"retry-after": "1"}
    assert retry_after(2.6) == {"retry-after": "3"}
