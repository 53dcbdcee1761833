"""The console's HTTP side against a running router: the state a client reads, the decision detail, the stream, and
who may read them (open on a loopback host; with keys on, admin keys only; never an ordinary key)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.auth.keys import KeyStore
from server.config import parse_config
from server.console.routes import CSP

from ..conftest import RunningTriage, demo_like_config, free_port, run_triage, sim_model
from ..test_errors import assert_openai_error

CODE = {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "Write a Python function"}]}


@pytest.fixture(scope="module")
def open_triage() -> Iterator[RunningTriage]:
    with run_triage(demo_like_config(policy={"name": "triage"})) as running:
        yield running


def test_state_shows_committed_requests_their_outcome_and_candidates(open_triage: RunningTriage) -> None:
    with httpx.Client(base_url=open_triage.base_url, timeout=20) as client:
        before = client.get("/dashboard/api/state").json()
        ids = []
        for stream in (False, True):
            response = client.post("/v1/chat/completions", json={**CODE, "stream": stream})
            assert response.status_code == 200
            ids.append(response.headers["x-triage-request-id"])
        named = client.post("/v1/chat/completions", json={**CODE, "model": "fast"})
        client.post("/v1/route", json=CODE)  # a dry run is not a decision: it must not appear
        state = client.get("/dashboard/api/state", params={"since": before["version"]}).json()
        rows = {row["request_id"]: row for row in state["decisions"]}
        assert set(rows) == {*ids, named.headers["x-triage-request-id"]}
        for rid in ids:
            row = rows[rid]
            assert row["status"] == "ok" and row["category"] == "code" and row["model"] in ("coder", "chat", "fast")
            assert 0 < row["ttft_ms"] <= row["latency_ms"]
        assert rows[named.headers["x-triage-request-id"]]["reason"] == "requested by name"
        assert {e["model"] for e in state["engines"]} == {"coder", "chat", "fast"}
        assert all(e["healthy"] and e["breaker"] == "closed" for e in state["engines"])
        assert state["gpus"][0]["engines"] == ["chat", "coder", "fast"]  # all three share GPU 0 in the config
        assert state["window"]["requests"] >= 3 and state["window"]["by_category"]["code"]

        detail = client.get(f"/dashboard/api/decisions/{ids[0]}").json()
        assert [c["model"] for c in detail["candidates"]] == ["coder", "chat", "fast"]
        assert {"quality", "ttft_ms", "latency_ms", "neighbour_ms", "cost_usd"} <= detail["candidates"][0].keys()
        assert_openai_error(client.get("/dashboard/api/decisions/nope"), 404, "no recent decision")

        again = client.get("/dashboard/api/state", params={"since": state["version"]}).json()
        assert again["decisions"] == []  # nothing changed since


def test_feedback_reaches_the_table(open_triage: RunningTriage) -> None:
    with httpx.Client(base_url=open_triage.base_url, timeout=20) as client:
        rid = client.post("/v1/chat/completions", json=CODE).headers["x-triage-request-id"]
        version = client.get("/dashboard/api/state").json()["version"]
        assert client.post("/v1/feedback", json={"request_id": rid, "score": 0.25}).json()["accepted"]
        rows = client.get("/dashboard/api/state", params={"since": version}).json()["decisions"]
        assert [(r["request_id"], r["feedback"]) for r in rows] == [(rid, 0.25)]


def test_page_assets_and_stream(open_triage: RunningTriage) -> None:
    with httpx.Client(base_url=open_triage.base_url, timeout=20) as client:
        page = client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        assert "/dashboard/assets/app.js" in page.text and "http" not in page.text.split("<body>")[0]  # no CDN
        assert client.get("/dashboard/assets/app.js").headers["content-type"].startswith("text/javascript")
        assert_openai_error(client.get("/dashboard/assets/index.js"), 404, "no console asset")
        events = []
        with client.stream("GET", "/dashboard/api/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("event:"):
                    events.append(line)
                if len(events) == 2:
                    break
        assert events == ["event: state", "event: state"]


def test_open_mode_on_a_non_loopback_host_refuses_the_console() -> None:
    config = demo_like_config(server={"host": "0.0.0.0"}, auth={"mode": "open"})
    with run_triage(config) as running:  # the test server itself listens on 127.0.0.1
        response = httpx.get(running.base_url + "/dashboard/api/state", timeout=10)
        assert_openai_error(response, 403, "only on a loopback host", "--admin")
        assert httpx.get(running.base_url + "/dashboard", timeout=10).status_code == 200  # the page holds no data


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[RunningTriage, KeyStore]]:
    db = str(tmp_path / "triage.db")
    store = KeyStore.open(db)
    models = [sim_model("chat", ["chat"], free_port()), sim_model("fast", ["fast"], free_port())]
    with run_triage(parse_config({"models": models, "auth": {"mode": "keys", "db": db}})) as running:
        yield running, store
    store.close()


def test_with_keys_only_admin_keys_open_the_console(keyed: tuple[RunningTriage, KeyStore]) -> None:
    running, store = keyed
    admin, _ = store.create("ops", admin=True)
    user, record = store.create("team")
    running.gateway.guard.tenancy.reload()
    url = running.base_url + "/dashboard/api/state"
    assert_openai_error(httpx.get(url, timeout=10), 401, "no API key")
    denied = httpx.get(url, headers={"authorization": f"Bearer {user}"}, timeout=10)
    assert_openai_error(denied, 403, f"key {record.id} is not an admin key", "--admin")
    assert httpx.get(url, headers={"authorization": f"Bearer {admin}"}, timeout=10).status_code == 200
    detail = httpx.get(running.base_url + "/dashboard/api/decisions/x", headers={"authorization": f"Bearer {user}"})
    assert_openai_error(detail, 403, "not an admin key")


def test_a_revoked_admin_key_ends_the_stream(keyed: tuple[RunningTriage, KeyStore]) -> None:
    running, store = keyed
    admin, record = store.create("ops", admin=True)
    running.gateway.guard.tenancy.reload()
    headers = {"authorization": f"Bearer {admin}"}
    events = []
    with httpx.stream("GET", running.base_url + "/dashboard/api/stream", headers=headers, timeout=20) as response:
        deadline = time.monotonic() + 15
        for line in response.iter_lines():
            if line.startswith("event:"):
                events.append(line)
                if len(events) == 1:
                    store.revoke(record.id)
                    running.gateway.guard.tenancy.reload()
            if time.monotonic() > deadline:
                break
    assert events[0] == "event: state" and events[-1] == "event: denied"


def test_the_stream_ends_when_the_router_drains() -> None:
    with run_triage(demo_like_config()) as running:
        events = []
        deadline = time.monotonic() + 15
        with httpx.stream("GET", running.base_url + "/dashboard/api/stream", timeout=10) as response:
            for line in response.iter_lines():
                if line.startswith("event:"):
                    events.append(line)
                    if len(events) == 1:
                        running.loop.call_soon_threadsafe(running.gateway.guard.drain.begin)
                assert time.monotonic() < deadline, "the console stream outlived the drain"
        assert events[0] == "event: state" and len(events) <= 3
