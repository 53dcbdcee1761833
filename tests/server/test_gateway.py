"""The gateway end to end: the official `openai` client against a running Triage with simulated engines."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from server.auth import OPEN_TENANT
from server.config import parse_config
from server.protocols import ROUTE_ADAPTERS
from server.relay import RequestIds

from .conftest import RunningTriage, free_port, run_triage, sim_model

TRIAGE_HEADERS = (
    "x-triage-request-id",
    "x-triage-model",
    "x-triage-category",
    "x-triage-reason",
    "x-triage-overhead-ms",
)
CODE_PROMPT = "Write a Python function that parses an ISO date string and returns a datetime; add a unit test."


def client_for(triage: RunningTriage) -> openai.OpenAI:
    return openai.OpenAI(base_url=triage.base_url + "/v1", api_key="unused", max_retries=0, timeout=20)


def assert_triage_headers(headers: httpx.Headers) -> None:
    for name in TRIAGE_HEADERS:
        assert headers.get(name), f"missing header {name}: {dict(headers)}"
    assert float(headers["x-triage-overhead-ms"]) >= 0


def test_models_lists_auto_and_every_configured_model(triage: RunningTriage) -> None:
    ids = [m.id for m in client_for(triage).models.list()]
    assert ids == ["auto", "coder", "chat", "fast"]


def test_auto_chat_routes_code_prompt_to_code_model(triage: RunningTriage) -> None:
    raw = client_for(triage).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": CODE_PROMPT}], max_tokens=8
    )
    completion = raw.parse()
    assert_triage_headers(raw.headers)
    assert raw.headers["x-triage-model"] == "coder"
    assert raw.headers["x-triage-category"] == "code"
    assert completion.model == "coder"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 8


def test_auto_chat_stream_relays_chunks_and_usage(triage: RunningTriage) -> None:
    client = client_for(triage)
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Write a short poem about autumn rain."}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert_triage_headers(response.headers)
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert {c.model for c in chunks} == {response.headers["x-triage-model"]}
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens == 6
    assert chunks[-1].choices == []


def test_named_model_completions_plain_and_streamed(triage: RunningTriage) -> None:
    client = client_for(triage)
    raw = client.completions.with_raw_response.create(model="fast", prompt="Once upon a time", max_tokens=5)
    assert raw.headers["x-triage-model"] == "fast"
    assert raw.headers["x-triage-reason"] == "requested by name"
    completion = raw.parse()
    assert completion.model == "fast" and completion.usage and completion.usage.completion_tokens == 5
    chunks = list(client.completions.create(model="chat", prompt="Hello", max_tokens=4, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert {c.model for c in chunks} == {"chat"}


def test_route_dry_run_explains_decision(triage: RunningTriage) -> None:
    response = httpx.post(
        triage.base_url + "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": CODE_PROMPT}]}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "coder" and body["category"] == "code"
    assert abs(sum(body["category_scores"].values()) - 1) < 1e-3
    assert 0 <= body["complexity"] <= 1 and body["reason"]
    assert {c["model"] for c in body["candidates"]} == {"coder", "chat", "fast"}
    for candidate in body["candidates"]:
        assert {"model", "score", "eligible", "reason"} <= candidate.keys()


def test_route_respects_allow_list(triage: RunningTriage) -> None:
    response = httpx.post(
        triage.base_url + "/v1/route",
        json={"messages": [{"role": "user", "content": CODE_PROMPT}], "route": {"models": ["fast"]}},
    )
    body = response.json()
    assert body["model"] == "fast"
    ruled_out = {c["model"]: c for c in body["candidates"] if not c["eligible"]}
    assert set(ruled_out) == {"coder", "chat"}


def test_unknown_fields_are_relayed_not_rejected(triage: RunningTriage) -> None:
    completion = client_for(triage).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        extra_body={"top_k": 5, "repetition_penalty": 1.1},
    )
    assert completion.choices[0].message.content


def test_client_request_id_is_echoed_but_ours_is_minted(triage: RunningTriage) -> None:
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    first = httpx.post(triage.base_url + "/v1/chat/completions", headers={"x-request-id": "abc-123"}, json=body)
    again = httpx.post(triage.base_url + "/v1/chat/completions", headers={"x-request-id": "abc-123"}, json=body)
    assert first.headers["x-request-id"] == again.headers["x-request-id"] == "abc-123"  # what the SDKs read
    ours = {first.headers["x-triage-request-id"], again.headers["x-triage-request-id"]}
    assert len(ours) == 2 and "abc-123" not in ours
    plain = httpx.post(triage.base_url + "/v1/chat/completions", json=body)
    assert plain.headers["x-request-id"] == plain.headers["x-triage-request-id"]


def test_health_ready_and_metrics(triage: RunningTriage) -> None:
    assert httpx.get(triage.base_url + "/health").json() == {"status": "ok"}
    assert httpx.get(triage.base_url + "/ready").status_code == 200
    client_for(triage).chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    text = httpx.get(triage.base_url + "/metrics").text
    for name in (
        "triage_requests_total",
        "triage_request_seconds_bucket",
        "triage_router_overhead_seconds",
        "triage_in_flight_requests",
        "triage_decisions_total",
        "triage_engine_healthy",
    ):
        assert name in text, name


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/completions"])
def test_overhead_header_is_small_and_numeric(triage: RunningTriage, endpoint: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]} if "chat" in endpoint else {"prompt": "hi"}
    response = httpx.post(triage.base_url + endpoint, json={"model": "auto", "max_tokens": 2, **body})
    assert response.status_code == 200
    assert 0 <= float(response.headers["x-triage-overhead-ms"]) < 1000


def _engine_running(triage: RunningTriage, model: str) -> int:
    root = triage.config.model(model).endpoints[0].removesuffix("/v1")  # type: ignore[union-attr]
    return int(httpx.get(root + "/sim/state").json()["running"])


def _wait_for_running(triage: RunningTriage, model: str, want: int, within_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if _engine_running(triage, model) == want:
            return time.monotonic() - start
        time.sleep(0.02)
    root = triage.config.model(model).endpoints[0].removesuffix("/v1")  # type: ignore[union-attr]
    state = httpx.get(root + "/sim/state").json()
    raise AssertionError(f"{model} runs {state['running']} sequences, not {want}, after {within_s} s: {state}")


@pytest.fixture(scope="module")
def real_speed() -> Iterator[RunningTriage]:
    """Engines at calibrated (not accelerated) speed, so a long answer is still running when we hang up."""
    config = parse_config(
        {
            "models": [
                sim_model("chat", ["chat"], free_port(), time_scale=1.0),
                sim_model("fast", ["fast"], free_port(), time_scale=1.0),
            ]
        }
    )
    with run_triage(config) as running:
        yield running


def test_client_disconnect_mid_stream_cancels_engine_request(real_speed: RunningTriage) -> None:
    triage = real_speed
    body = {
        "model": "chat",
        "stream": True,
        "max_tokens": 4000,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "go"}],
    }
    with httpx.stream("POST", triage.base_url + "/v1/chat/completions", json=body, timeout=20) as response:
        chunks = response.iter_raw()  # keep a reference: a collected iterator closes the response
        assert next(chunks).startswith(b"data: ")
        _wait_for_running(triage, "chat", 1, within_s=2.0)
    _wait_for_running(triage, "chat", 0, within_s=1.0)
    # counted as the client's doing, not the model's: the policy learns nothing from it
    metrics = httpx.get(triage.base_url + "/metrics").text
    assert 'triage_requests_total{endpoint="chat",model="chat",status="cancelled"}' in metrics


def test_client_disconnect_before_non_streamed_answer_cancels_engine_request(real_speed: RunningTriage) -> None:
    triage = real_speed
    body = b'{"model":"fast","max_tokens":4000,"ignore_eos":true,"messages":[{"role":"user","content":"go"}]}'
    host, port = triage.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        _wait_for_running(triage, "fast", 1, within_s=2.0)
    _wait_for_running(triage, "fast", 0, within_s=1.0)


def test_stream_abandoned_before_relay_starts_releases_engine_and_accounting(real_speed: RunningTriage) -> None:
    triage = real_speed
    gateway = triage.gateway
    raw = (
        b'{"model":"chat","stream":true,"max_tokens":4000,"ignore_eos":true,'
        b'"messages":[{"role":"user","content":"go"}]}'
    )

    async def open_and_abandon() -> int:
        chat = ROUTE_ADAPTERS["/v1/chat/completions"]
        relay = gateway.relay(chat, RequestIds.mint(), OPEN_TENANT, time.perf_counter())
        await gateway.serve(relay, raw)
        in_flight = gateway.load.engine("chat").in_flight
        await relay.aclose()
        await relay.aclose()  # idempotent
        return in_flight

    admitted_before = gateway.guard.admission.in_flight
    assert triage.call(open_and_abandon()) == 1
    assert gateway.load.engine("chat").in_flight == 0
    assert gateway.guard.admission.in_flight == admitted_before  # the global slot is free again too
    _wait_for_running(triage, "chat", 0, within_s=1.0)
