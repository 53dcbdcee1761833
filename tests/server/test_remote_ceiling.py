"""`policy.allow_remote: false` is a ceiling: no request lifts it, neither with `route.allow_remote: true` nor by
naming the remote model, in open mode as with keys."""

from __future__ import annotations

import httpx

from server.config import parse_config

from .conftest import free_port, run_triage, sim_model
from .test_errors import assert_openai_error

HELLO = [{"role": "user", "content": "hello"}]


def test_a_request_cannot_lift_policy_allow_remote_false() -> None:
    remote = {**sim_model("cloud", ["chat", "fast"], free_port()), "remote": True}
    config = parse_config({"models": [sim_model("local", ["chat", "fast"], free_port()), remote]})
    with run_triage(config) as triage:
        url = triage.base_url + "/v1/chat/completions"
        lifted = {"model": "auto", "max_tokens": 2, "messages": HELLO, "route": {"allow_remote": True}}
        assert httpx.post(url, json=lifted, timeout=20).headers["x-triage-model"] == "local"
        only_remote = {**lifted, "route": {"models": ["cloud"], "allow_remote": True}}
        error = assert_openai_error(httpx.post(url, json=only_remote, timeout=20), 400, "remote not allowed")
        assert error["code"] == "no_eligible_model"
        named = httpx.post(url, json={"model": "cloud", "max_tokens": 2, "messages": HELLO}, timeout=20)
        assert assert_openai_error(named, 403, "policy.allow_remote")["param"] == "model"
        dry = httpx.post(triage.base_url + "/v1/route", json=lifted, timeout=20).json()
        cloud = next(c for c in dry["candidates"] if c["model"] == "cloud")
        assert not cloud["eligible"] and cloud["reason"] == "remote not allowed"
