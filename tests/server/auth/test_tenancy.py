"""Keys mode end to end: 401/403/429 in OpenAI's error shape, limits per key, revocation without restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth.keys import KeyStore
from server.auth.ratelimit import Limiter
from server.auth.tenancy import TokenBucket, resolve_mode
from server.config import parse_config

from ..conftest import RunningTriage, free_port, run_triage, sim_model
from ..test_errors import assert_openai_error

CHAT = {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]}


def test_token_bucket() -> None:
    bucket = TokenBucket(60)  # one per second
    assert all(bucket.take(1, 0.0) == 0.0 for _ in range(60))
    assert bucket.take(1, 0.0) == pytest.approx(1.0)
    assert bucket.take(1, 1.0) == 0.0
    assert TokenBucket(10).take(50, 0.0) == 0.0  # bigger than a minute's worth: passes on a full bucket


def test_a_limiter_keeps_one_bucket_per_name_and_forgets_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("server.auth.ratelimit.MAX_NAMES", 3)
    limiter = Limiter(2)
    assert [limiter.take("a", 0.0) for _ in range(2)] == [0.0, 0.0] and limiter.take("a", 0.0) > 0
    assert limiter.take("b", 0.0) == 0.0  # its own bucket
    for name in ("c", "d"):
        limiter.take(name, 0.0)
    assert limiter.take("a", 0.0) == 0.0  # forgotten (the least recently used of four): a fresh bucket


def test_default_mode_follows_the_bind_address() -> None:
    assert resolve_mode(None, loopback=True) == "open"
    assert resolve_mode(None, loopback=False) == "keys"
    assert resolve_mode("open", loopback=False) == "open"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[RunningTriage, dict[str, str], KeyStore]]:
    db = str(tmp_path / "triage.db")
    store = KeyStore.open(db)
    keys = {
        "all": store.create("all")[0],
        "fast_only": store.create("fast-only", models=["fast"])[0],
        "slow": store.create("slow", rpm=2)[0],
        "budget": store.create("budget", daily_tokens=300)[0],
    }
    models = [sim_model("chat", ["chat"], free_port()), sim_model("fast", ["fast"], free_port())]
    config = parse_config({"models": models, "auth": {"mode": "keys", "db": db}})
    with run_triage(config) as triage:
        yield triage, keys, store
    store.close()


def post(
    triage: RunningTriage, key: str | None, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(triage.base_url + path, json=body, headers=headers, timeout=20)


def test_missing_and_invalid_keys_are_401(keyed: tuple[RunningTriage, dict[str, str], KeyStore]) -> None:
    triage, keys, _ = keyed
    error = assert_openai_error(post(triage, None, CHAT), 401, "API key")
    assert error["type"] == "authentication_error"
    assert_openai_error(post(triage, "tri-wrong", CHAT), 401, "invalid")
    assert_openai_error(httpx.get(triage.base_url + "/v1/models"), 401)
    assert httpx.get(triage.base_url + "/health").status_code == 200  # probes need no key
    assert post(triage, keys["all"], CHAT).status_code == 200


def test_model_allow_list_is_403_for_named_and_narrows_auto(
    keyed: tuple[RunningTriage, dict[str, str], KeyStore],
) -> None:
    triage, keys, _ = keyed
    error = assert_openai_error(post(triage, keys["fast_only"], {**CHAT, "model": "chat"}), 403, "may not use")
    assert error["type"] == "permission_error"
    r = post(triage, keys["fast_only"], {**CHAT, "messages": [{"role": "user", "content": "Write a poem"}]})
    assert r.status_code == 200 and r.headers["x-triage-model"] == "fast"
    assert_openai_error(post(triage, keys["fast_only"], {**CHAT, "route": {"models": ["chat"]}}), 403)


def test_rate_limit_and_budget_are_429_with_retry_after(keyed: tuple[RunningTriage, dict[str, str], KeyStore]) -> None:
    triage, keys, _ = keyed
    assert [post(triage, keys["slow"], CHAT).status_code for _ in range(2)] == [200, 200]
    limited = post(triage, keys["slow"], CHAT)
    assert_openai_error(limited, 429, "per minute")
    assert int(limited.headers["retry-after"]) >= 1
    big = {**CHAT, "max_tokens": 200, "ignore_eos": True}  # the engine really generates 200 tokens
    assert post(triage, keys["budget"], big).status_code == 200
    over = post(triage, keys["budget"], big)
    assert assert_openai_error(over, 429, "local tokens today")["code"] == "insufficient_quota"


def test_usage_is_booked_and_revocation_takes_effect(keyed: tuple[RunningTriage, dict[str, str], KeyStore]) -> None:
    triage, keys, store = keyed
    assert post(triage, keys["all"], CHAT).status_code == 200
    ledger = triage.gateway.guard.tenancy.ledger
    assert ledger is not None
    ledger.flush()
    assert ledger.count() >= 1 and ledger.committed >= 1
    kid = next(r.id for r in store.list() if r.name == "all")
    store.revoke(kid)
    deadline = time.monotonic() + 5
    while post(triage, keys["all"], CHAT).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still accepted"
        time.sleep(0.2)
