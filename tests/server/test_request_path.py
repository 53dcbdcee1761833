"""The request path's promises: a dry run changes nothing, an engine 4xx teaches nothing, our request ids are our
own, every resource a stream holds is released exactly once, and middleware sees the hot routes too."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from server.backends import UpstreamStream
from server.config import parse_config
from server.policy import Outcome

from .conftest import RunningTriage, free_port, run_triage, sim_model

CHAT = "/v1/chat/completions"
CODE = [{"role": "user", "content": "Write a Python function that reverses a linked list."}]


def triage_config(tmp_path: Path, **sim: Any) -> dict[str, Any]:
    models = [
        sim_model("coder", ["code"], free_port(), **sim),
        sim_model("chat", ["chat"], free_port(), **sim),
    ]
    models[0]["profile"] = {"quality": {"code": 0.9}}
    policy = {"name": "triage", "store": str(tmp_path / "triage.db"), "explore_share": 0.2}
    return {"models": models, "policy": policy}


@pytest.fixture
def learning(tmp_path: Path) -> Iterator[RunningTriage]:
    with run_triage(parse_config(triage_config(tmp_path))) as running:
        yield running


def _metrics(triage: RunningTriage) -> dict[str, str]:
    """Sample name+labels -> value, without the gauges the engine probe rewrites every second."""
    text = httpx.get(triage.base_url + "/metrics").text
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or line.startswith(("triage_engine_", "triage_gpu_")):
            continue
        name, _, value = line.rpartition(" ")
        samples[name] = value
    return samples


def _rows(triage: RunningTriage) -> list[dict[str, Any]]:
    store = triage.gateway.policy.store  # type: ignore[attr-defined]
    store.flush()
    return list(store.latest(1000))


def test_a_dry_run_changes_nothing_but_its_own_counter(learning: RunningTriage) -> None:
    with httpx.Client(base_url=learning.base_url, timeout=20) as client:
        _dry_runs_change_nothing(learning, client)


def _dry_runs_change_nothing(learning: RunningTriage, client: httpx.Client) -> None:
    assert client.post(CHAT, json={"model": "auto", "messages": CODE, "max_tokens": 4}).status_code == 200
    policy = learning.gateway.policy
    before = (_metrics(learning), _rows(learning), dict(policy.stats.counts), policy.explorer.rng.getstate())  # type: ignore[attr-defined]
    remembered = len(policy.recent)  # type: ignore[attr-defined]
    for _ in range(20):
        decision = client.post("/v1/route", json={"messages": CODE})
        assert decision.status_code == 200 and decision.json()["model"] == "coder"
    after = (_metrics(learning), _rows(learning), dict(policy.stats.counts), policy.explorer.rng.getstate())  # type: ignore[attr-defined]
    dry_runs = "triage_dry_runs_total"
    assert float(after[0].pop(dry_runs)) - float(before[0].pop(dry_runs)) == 20
    assert after[0] == before[0]  # no other metric moved
    assert after[1] == before[1]  # no audit row written or changed
    assert after[2] == before[2] and after[3] == before[3]  # no statistic, no exploration draw
    assert len(policy.recent) == remembered  # type: ignore[attr-defined]
    rid = decision.json()["request_id"]
    feedback = client.post("/v1/feedback", json={"request_id": rid, "score": 0.0}).json()
    assert feedback == {"request_id": rid, "accepted": False}  # a dry run cannot be rated


def test_an_engine_4xx_is_the_requests_fault_and_teaches_nothing(tmp_path: Path) -> None:
    config = parse_config(triage_config(tmp_path, max_model_len=64))  # the engines refuse long requests
    with run_triage(config) as triage:
        gateway = triage.gateway
        body = {"model": "auto", "messages": CODE, "max_tokens": 500}  # fits the config, not the engine
        response = httpx.post(triage.base_url + CHAT, json=body, timeout=20)
        assert response.status_code == 400, response.text
        assert gateway.policy.stats.counts == {}  # type: ignore[attr-defined]
        assert all(b.consecutive_failures == 0 for b in gateway.guard.breakers.breakers.values())
        (row,) = _rows(triage)
        assert row["outcome"] == Outcome.REFUSED
        assert gateway.load.engine(row["model"]).in_flight == 0


def test_a_reused_client_request_id_overwrites_nothing(learning: RunningTriage) -> None:
    body = {"model": "auto", "messages": CODE, "max_tokens": 2}
    ours = []
    for _ in range(2):
        response = httpx.post(learning.base_url + CHAT, json=body, headers={"x-request-id": "same"}, timeout=20)
        assert response.headers["x-request-id"] == "same"
        ours.append(response.headers["x-triage-request-id"])
    rows = {r["request_id"]: r for r in _rows(learning)}
    assert set(ours) <= set(rows) and len(set(ours)) == 2
    assert all(rows[rid]["client_request_id"] == "same" and rows[rid]["outcome"] == "ok" for rid in ours)


def test_a_disconnect_mid_stream_releases_everything_exactly_once(
    learning: RunningTriage, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = learning.gateway
    released: Counter[str] = Counter()

    def counting(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            released[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(gateway.load, "finished", counting("accounting", gateway.load.finished))
    monkeypatch.setattr(gateway.guard.admission, "_release", counting("slot", gateway.guard.admission._release))
    monkeypatch.setattr(UpstreamStream, "close", counting("engine stream", UpstreamStream.close))
    slots_before = gateway.guard.admission.in_flight
    body = {"model": "auto", "messages": CODE, "max_tokens": 4000, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=20) as client, client.stream("POST", learning.base_url + CHAT, json=body) as response:
        assert response.status_code == 200
        rid, model = response.headers["x-triage-request-id"], response.headers["x-triage-model"]
        next(response.iter_bytes())  # the first events arrived: the relay is running; now hang up
    deadline = time.monotonic() + 5
    while gateway.load.engine(model).in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # anything released twice would have been by now
    assert released == {"accounting": 1, "slot": 1, "engine stream": 1}
    assert gateway.load.engine(model).in_flight == 0 and gateway.guard.admission.in_flight == slots_before
    row = next(r for r in _rows(learning) if r["request_id"] == rid)
    assert row["outcome"] == Outcome.CANCELLED


class _Stamp:
    """A pure ASGI middleware that stamps every response with a header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-stamp", b"1")]
            await send(message)

        await self.app(scope, receive, stamped)


def test_middleware_applies_to_every_route_hot_ones_included(monkeypatch: pytest.MonkeyPatch) -> None:
    import server.app as app_module

    original = app_module.build_app

    def with_stamp(config: Any, **kwargs: Any) -> Any:
        return original(config, middleware=[Middleware(_Stamp)], **kwargs)

    monkeypatch.setattr("tests.server.conftest.build_app", with_stamp)
    config = parse_config({"models": [sim_model("fast", ["fast"], free_port())]})
    with run_triage(config) as triage:
        base = triage.base_url
        body = {"model": "auto", "messages": CODE, "max_tokens": 2}
        for response in (
            httpx.post(base + CHAT, json=body),
            httpx.post(base + CHAT, json={**body, "stream": True}),
            httpx.post(base + CHAT, content=b"not json"),
            httpx.post(base + "/v1/route", json=body),
            httpx.get(base + "/health"),
            httpx.get(base + "/nope"),
        ):
            assert response.headers.get("x-stamp") == "1", (response.request.url, response.status_code)


def test_unknown_route_names_the_routes(triage: RunningTriage) -> None:
    error = httpx.get(triage.base_url + "/v1/responsez").json()["error"]
    assert "/v1/chat/completions" in error["message"] and "/v1/models" in error["message"]
    wrong_method = httpx.get(triage.base_url + CHAT)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


def test_openapi_still_declares_the_generation_routes(triage: RunningTriage) -> None:
    spec = httpx.get(triage.base_url + "/openapi.json").json()
    for path in (CHAT, "/v1/completions"):
        post = spec["paths"][path]["post"]
        assert post["requestBody"]["required"] and {"200", "400", "429", "503"} <= set(post["responses"])
