"""POST /v1/feedback end to end: only the key that made a committed request may rate it, once; dry runs and
unknown ids move nothing; calls are rate-limited per key (open mode: per client address) with a 429 in OpenAI's
shape."""

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

CODE = [{"role": "user", "content": "Write a Python function that reverses a linked list."}]


def _config(tmp_path: Path, **extra: Any) -> Any:
    models = [sim_model("coder", ["code"], free_port()), sim_model("chat", ["chat"], free_port())]
    models[0]["profile"] = {"quality": {"code": 0.9}}
    policy = {"name": "triage", "store": str(tmp_path / "decisions.db"), "explore_share": 0.0}
    return parse_config({"models": models, "policy": policy, **extra})


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[RunningTriage, dict[str, str]]]:
    db = str(tmp_path / "keys.db")
    store = KeyStore.open(db)
    keys = {"owner": store.create("owner")[0], "other": store.create("other", models=["chat"])[0]}
    config = _config(tmp_path, auth={"mode": "keys", "db": db}, server={"feedback_per_minute": 8})
    with run_triage(config) as triage:
        yield triage, keys
    store.close()


def _as(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_only_the_owner_rates_a_committed_request_once(keyed: tuple[RunningTriage, dict[str, str]]) -> None:
    triage, keys = keyed
    with httpx.Client(base_url=triage.base_url, timeout=20) as client:
        body = {"model": "auto", "messages": CODE, "max_tokens": 2}
        rid = client.post("/v1/chat/completions", json=body, headers=_as(keys["owner"])).headers["x-triage-request-id"]
        dry = client.post("/v1/route", json={"messages": CODE}, headers=_as(keys["owner"])).json()["request_id"]
        stats = dict(triage.gateway.policy.stats.counts)  # type: ignore[attr-defined]

        def rate(key: str, request_id: str) -> Any:
            response = client.post("/v1/feedback", json={"request_id": request_id, "score": 0.0}, headers=_as(key))
            assert response.status_code == 200, response.text
            return response.json()["accepted"]

        assert [rate(keys["other"], rid) for _ in range(3)] == [False] * 3  # another key's request
        assert rate(keys["owner"], dry) is False  # a dry run was never committed
        assert rate(keys["owner"], "0" * 22) is False  # unknown
        assert dict(triage.gateway.policy.stats.counts) == stats  # type: ignore[attr-defined]
        assert rate(keys["owner"], rid) is True
        assert rate(keys["owner"], rid) is False  # once


def test_feedback_is_rate_limited_per_key(keyed: tuple[RunningTriage, dict[str, str]]) -> None:
    triage, keys = keyed
    with httpx.Client(base_url=triage.base_url, timeout=20) as client:

        def rate(key: str) -> httpx.Response:
            return client.post("/v1/feedback", json={"request_id": "x", "score": 1.0}, headers=_as(key))

        assert [rate(keys["other"]).status_code for _ in range(8)] == [200] * 8
        limited = rate(keys["other"])
        error = assert_openai_error(limited, 429, "8 feedback calls per minute", "server.feedback_per_minute")
        assert error["type"] == "rate_limit_error" and int(limited.headers["retry-after"]) >= 1
        assert rate(keys["owner"]).status_code == 200  # each key its own bucket


def test_feedback_is_rate_limited_per_client_address_in_open_mode(tmp_path: Path) -> None:
    with run_triage(_config(tmp_path, server={"feedback_per_minute": 3})) as triage:
        url = triage.base_url + "/v1/feedback"
        statuses = [httpx.post(url, json={"request_id": "x", "score": 1.0}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
