"""Fallback before the first byte and clean stream endings after it, against engines that die, hang and drop."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from server.config import parse_config

from .conftest import RunningTriage, free_port, run_triage, sim_model
from .simthread import SimThread, sim_engines

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]  # general_qa -> the 'fast' role


def two_fast_models(**first_sim: Any) -> dict[str, Any]:
    primary = sim_model("primary", ["fast"], free_port(), **first_sim)
    backup = sim_model("backup", ["chat"], free_port())
    for m in (primary, backup):
        m["timeouts"] = {"first_token_s": 1.0, "between_tokens_s": 0.5, "total_s": 2.0}
    # keep both candidates in play; static routing sends general_qa to the 'fast' role (primary) first
    return {"models": [primary, backup], "breaker": {"failures": 1000}, "policy": {"name": "static"}}


@pytest.fixture
def pair() -> Iterator[tuple[RunningTriage, SimThread]]:
    config = parse_config(two_fast_models())
    with sim_engines(config) as engines, run_triage(config, start_simulated=False) as triage:
        yield triage, engines


def sse_events(raw: bytes) -> list[bytes]:
    return [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e.startswith(b"data: ")]


def test_engine_killed_under_load_fails_no_request_that_had_not_started(pair: tuple[RunningTriage, SimThread]) -> None:
    triage, engines = pair
    url = triage.base_url + "/v1/chat/completions"

    def one(i: int) -> tuple[int, bool, bool]:
        stream = i % 2 == 1
        body = {"model": "auto", "messages": QUESTION, "max_tokens": 12, "stream": stream}
        with httpx.Client(timeout=20) as client:
            if not stream:
                r = client.post(url, json=body)
                return r.status_code, False, False
            with client.stream("POST", url, json=body) as r:
                raw = r.read()
            events = sse_events(raw)
            started = bool(events) and not events[0].startswith(b'{"error"')
            return r.status_code, started, events[-1:] == [b"[DONE]"]

    results = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(40)]
        time.sleep(0.3)
        engines.kill("primary")
        futures += [pool.submit(one, i) for i in range(40, 80)]
        results = [f.result(30) for f in futures]
    assert all(status == 200 for status, _, _ in results), results
    assert all(done for _, started, done in results if started), "every stream ended with [DONE]"


def test_fallback_never_goes_to_a_model_the_request_excluded(pair: tuple[RunningTriage, SimThread]) -> None:
    triage, engines = pair
    engines.kill("primary")
    body = {"model": "auto", "messages": QUESTION, "max_tokens": 2, "route": {"models": ["primary"]}}
    time.sleep(1.2)  # the probe marks it unhealthy
    r = httpx.post(triage.base_url + "/v1/chat/completions", json=body, timeout=20)
    assert r.status_code == 503, r.text
    named = httpx.post(triage.base_url + "/v1/chat/completions", json={**body, "model": "primary"}, timeout=20)
    assert named.status_code == 503 and "x-triage-model" not in named.headers


def test_hang_falls_back_and_header_says_so(pair: tuple[RunningTriage, SimThread]) -> None:
    triage, engines = pair
    engines.faults("primary", hang=True)
    for stream in (False, True):
        t0 = time.monotonic()
        r = httpx.post(
            triage.base_url + "/v1/chat/completions",
            timeout=20,
            json={"model": "auto", "messages": QUESTION, "max_tokens": 3, "stream": stream},
        )
        assert r.status_code == 200 and r.headers["x-triage-model"] == "backup"
        assert "fell back to backup after primary failed" in r.headers["x-triage-reason"]
        assert time.monotonic() - t0 < 5  # first_token_s or total_s (1-2 s) + the backup's answer


def test_stream_dropped_mid_way_ends_with_error_event(pair: tuple[RunningTriage, SimThread]) -> None:
    triage, engines = pair
    engines.faults("primary", drop_mid_stream_rate=1.0)
    body = {"model": "primary", "messages": QUESTION, "max_tokens": 50, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", triage.base_url + "/v1/chat/completions", json=body, timeout=10) as r:
        events = sse_events(r.read())
    assert r.status_code == 200
    assert events[-1] == b"[DONE]"
    error = orjson.loads(events[-2])["error"]
    assert error["type"] == "engine_unavailable" and "dropped" in error["message"]
    assert any(b'"delta"' in e for e in events[:-2])  # tokens came before the cut


def test_stream_that_hangs_after_start_is_ended_not_left_open(pair: tuple[RunningTriage, SimThread]) -> None:
    triage, engines = pair
    body = {"model": "primary", "messages": QUESTION, "max_tokens": 2000, "stream": True, "ignore_eos": True}
    t0 = time.monotonic()
    with httpx.stream("POST", triage.base_url + "/v1/chat/completions", json=body, timeout=10) as r:
        chunks = r.iter_raw()
        first = next(chunks)
        assert first.startswith(b"data: ")
        engines.faults("primary", slowdown=1000.0)  # the engine goes silent mid-stream
        rest = b"".join(chunks)
    events = sse_events(first + rest)
    assert events[-1] == b"[DONE]"
    assert orjson.loads(events[-2])["error"]["type"] == "engine_timeout"
    assert time.monotonic() - t0 < 5  # between_tokens_s is 0.5 s


def test_overall_deadline_bounds_all_attempts() -> None:
    data = two_fast_models(faults={"hang": True})
    data["models"][1]["simulated"]["faults"] = {"hang": True}
    data["server"] = {"request_deadline_s": 1.5}
    for m in data["models"]:
        m["timeouts"] = {"first_token_s": 5.0, "total_s": 5.0}
    config = parse_config(data)
    with sim_engines(config), run_triage(config, start_simulated=False) as triage:
        t0 = time.monotonic()
        r = httpx.post(
            triage.base_url + "/v1/chat/completions",
            timeout=20,
            json={"model": "auto", "messages": QUESTION, "max_tokens": 3, "stream": True},
        )
        elapsed_s = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert elapsed_s < 3.0, elapsed_s
    assert "overall deadline" in r.json()["error"]["message"]
