"""server.cors_origins: preflights answered on every route (the front door's raw-ASGI ones included), the
x-triage-* headers exposed to browsers, nothing for origins not listed, and no CORS at all by default."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from server.config import parse_config

from .conftest import RunningTriage, demo_like_config, free_port, run_triage, sim_model

ORIGIN = "http://localhost:5173"
ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/route", "/health"]


@pytest.fixture(scope="module")
def cors() -> Iterator[RunningTriage]:
    config = parse_config({"models": [sim_model("chat", ["chat"], free_port())], "server": {"cors_origins": [ORIGIN]}})
    with run_triage(config) as running:
        yield running


def preflight(base_url: str, path: str, origin: str) -> httpx.Response:
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os",
    }
    return httpx.options(base_url + path, headers=headers)


@pytest.mark.parametrize("path", ROUTES)
def test_preflight_on_every_route(cors: RunningTriage, path: str) -> None:
    r = preflight(cors.base_url, path, ORIGIN)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "x-stainless-os" in r.headers["access-control-allow-headers"].lower()
    refused = preflight(cors.base_url, path, "http://evil.example")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_answers_expose_the_triage_headers(cors: RunningTriage) -> None:
    body = {"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(cors.base_url + "/v1/chat/completions", json=body, headers={"origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"x-triage-model", "x-triage-reason", "x-triage-category", "x-triage-request-id", "x-request-id"} <= exposed
    error = httpx.post(cors.base_url + "/v1/chat/completions", json={"model": "nope"}, headers={"origin": ORIGIN})
    assert error.status_code == 400 and error.headers["access-control-allow-origin"] == ORIGIN


def test_no_cors_unless_configured() -> None:
    with run_triage(demo_like_config()) as triage:
        r = preflight(triage.base_url, "/v1/chat/completions", ORIGIN)
        assert "access-control-allow-origin" not in r.headers and r.status_code == 405
