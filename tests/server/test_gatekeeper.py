"""The gatekeeper middleware: duplicate Authorization headers are a 401 on every route, and with keys required the
routes that describe the server need a key too (anonymous /metrics from loopback only when configured)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth.keys import KeyStore
from server.config import parse_config

from .conftest import RunningTriage, free_port, run_triage, sim_model
from .test_errors import assert_openai_error

CHAT = {"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": "hello"}]}
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/completions", {"model": "auto", "max_tokens": 2, "prompt": "hello"}),
    ("POST", "/v1/route", CHAT),
    ("POST", "/v1/feedback", {"request_id": "x", "score": 1.0}),
    ("GET", "/v1/models", None),
    ("GET", "/health", None),
    ("GET", "/ready", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
]
INTROSPECTION = ["/metrics", "/docs", "/redoc", "/openapi.json"]


def keyed_server(tmp_path: Path, **server: Any) -> Iterator[tuple[RunningTriage, str]]:
    db = str(tmp_path / "triage.db")
    store = KeyStore.open(db)
    key = store.create("k")[0]
    config = parse_config(
        {"models": [sim_model("fast", ["fast"], free_port())], "auth": {"mode": "keys", "db": db}, "server": server}
    )
    with run_triage(config) as triage:
        yield triage, key
    store.close()


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[RunningTriage, str]]:
    yield from keyed_server(tmp_path)


@pytest.fixture
def keyed_loopback_metrics(tmp_path: Path) -> Iterator[tuple[RunningTriage, str]]:
    yield from keyed_server(tmp_path, metrics_anonymous_loopback=True)


def _send(triage: RunningTriage, method: str, path: str, body: dict[str, Any] | None, headers: Any) -> httpx.Response:
    return httpx.request(method, triage.base_url + path, json=body, headers=headers, timeout=20)


def test_duplicate_authorization_is_401_on_every_route(keyed: tuple[RunningTriage, str]) -> None:
    triage, key = keyed
    twice = [("authorization", f"Bearer {key}"), ("authorization", "Bearer tri-someone-else")]
    for method, path, body in ROUTES:
        error = assert_openai_error(_send(triage, method, path, body, twice), 401, "2 Authorization headers")
        assert error["type"] == "authentication_error"
    # the same key twice is as ambiguous to a reader as two keys
    assert _send(triage, "GET", "/v1/models", None, [("authorization", f"Bearer {key}")] * 2).status_code == 401
    assert _send(triage, "POST", "/v1/chat/completions", CHAT, {"authorization": f"Bearer {key}"}).status_code == 200


def test_duplicate_authorization_is_401_in_open_mode_too(triage: RunningTriage) -> None:
    twice = [("authorization", "Bearer a"), ("authorization", "Bearer b")]
    for method, path, body in ROUTES:
        assert _send(triage, method, path, body, twice).status_code == 401, path


def test_introspection_routes_need_a_key_when_keys_are_required(keyed: tuple[RunningTriage, str]) -> None:
    triage, key = keyed
    for path in INTROSPECTION:
        assert_openai_error(httpx.get(triage.base_url + path), 401, "API key")
        assert_openai_error(httpx.get(triage.base_url + path, headers={"authorization": "Bearer tri-wrong"}), 401)
        assert httpx.get(triage.base_url + path, headers={"authorization": f"Bearer {key}"}).status_code == 200
    for path in ("/health", "/ready"):  # probes need no key
        assert httpx.get(triage.base_url + path).status_code == 200


def test_anonymous_metrics_from_loopback_when_configured(keyed_loopback_metrics: tuple[RunningTriage, str]) -> None:
    triage, _ = keyed_loopback_metrics
    assert httpx.get(triage.base_url + "/metrics").status_code == 200
    assert httpx.get(triage.base_url + "/openapi.json").status_code == 401  # only /metrics is opened


def test_introspection_routes_stay_open_in_open_mode(triage: RunningTriage) -> None:
    for path in INTROSPECTION:
        assert httpx.get(triage.base_url + path).status_code == 200
