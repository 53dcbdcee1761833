"""The privacy guard: what it detects, that flagged requests never reach a remote model, that nothing found is
logged, and that it is fast."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from server.config import PrivacyConfig, parse_config
from server.privacy import UNSCANNED, PrivacyGuard, iban_ok, luhn_ok

from .conftest import RunningTriage, free_port, run_triage, sim_model
from .simthread import SimThread, sim_engines

# Planted secrets and personal data, one kind each (all published test values or made up).
PLANTED = {
    "email": "Please reply to maria.rossi@example.org about the offer.",
    "phone": "Call me back at +1 (415) 555-0132 after lunch.",
    "card_number": "Charge card 4111 1111 1111 1111, expiry 12/27.",
    "iban": "Wire it to DE89 3704 0044 0532 0130 00 by Friday.",
    "aws_key": "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    "github_token": "git clone https://ghp_" + "x1Y2z3" * 6 + "@github.com/org/repo",
    "openai_key": "client = OpenAI(api_key='sk-proj-" + "Ab3" * 10 + "')",
    "slack_token": "bot token xoxb-2048-4096-" + "q" * 24,
    "jwt": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3",
    "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    "password": "db settings: password = 'Tr0ub4dor&3'",
}
CLEAN = [
    "Write a Python function that parses an ISO date string like 2024-01-15 and returns a datetime.",
    "The population grew from 1200 to 3400 between 1990 and 2020, a 183% rise.",
    "Summarize: version 2.3.1 shipped on 2024-05-12 with 14 bug fixes and 3 features.",
    "What is 12345 * 6789? Show your work.",
    "Explain the difference between TCP and UDP in three sentences.",
]


@pytest.fixture(scope="module")
def guard() -> PrivacyGuard:
    return PrivacyGuard(PrivacyConfig(patterns={"employee_id": r"\bEMP-\d{6}\b"}))


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_each_planted_kind_is_found(guard: PrivacyGuard, kind: str) -> None:
    assert kind in guard.scan_text(PLANTED[kind])


@pytest.mark.parametrize("text", CLEAN)
def test_clean_prompts_pass(guard: PrivacyGuard, text: str) -> None:
    assert guard.scan_text(text) == []


def test_checksums_reject_lookalikes(guard: PrivacyGuard) -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")
    assert "card_number" not in guard.scan_text("order 4111 1111 1111 1112")
    assert "iban" not in guard.scan_text("ref DE00 3704 0044 0532 0130 00")


def test_extra_patterns_and_whole_body_and_bounds(guard: PrivacyGuard) -> None:
    assert guard.scan_text("ticket for EMP-123456") == ["employee_id"]
    payload = {
        "model": "auto",
        "messages": [{"role": "system", "content": PLANTED["email"]}, {"role": "user", "content": "hi"}],
        "tools": [{"function": {"description": PLANTED["aws_key"]}}],
    }
    assert set(guard.scan_payload(payload)) == {"email", "aws_key"}  # not just the last user turn
    small = PrivacyGuard(PrivacyConfig(max_scan_chars=100))
    assert small.scan_payload({"prompt": "x" * 200}) == [UNSCANNED]  # too long to scan: kept local
    assert PrivacyGuard(PrivacyConfig(enabled=False)).scan_payload({"prompt": PLANTED["email"]}) == []


@pytest.fixture(scope="module")
def with_remote() -> Iterator[tuple[RunningTriage, SimThread]]:
    local = sim_model("local", ["chat", "fast", "code"], free_port())
    remote = sim_model("cloud", ["chat", "fast", "code"], free_port())
    remote.update(remote=True, profile={"usd_per_1m_tokens": 2.0})
    config = parse_config({"models": [local, remote], "policy": {"allow_remote": True}})
    with sim_engines(config) as engines, run_triage(config, start_simulated=False) as triage:
        yield triage, engines


def test_planted_secrets_never_reach_the_remote_model(
    with_remote: tuple[RunningTriage, SimThread], caplog: pytest.LogCaptureFixture
) -> None:
    triage, engines = with_remote
    url = triage.base_url + "/v1/chat/completions"
    clean = {
        "model": "auto",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": CLEAN[4]}],
        "route": {"models": ["cloud"], "allow_remote": True},
    }
    assert httpx.post(url, json=clean, timeout=20).headers["x-triage-model"] == "cloud"  # the path is live
    before = engines.served("cloud")
    caplog.set_level(logging.DEBUG)
    for kind, text in PLANTED.items():
        messages = [{"role": "user", "content": text}]
        only_remote = httpx.post(url, json={**clean, "messages": messages}, timeout=20)
        assert only_remote.status_code == 400, (kind, only_remote.text)
        assert only_remote.json()["error"]["code"] == "sensitive_data_must_stay_local"
        named = httpx.post(url, json={"model": "cloud", "max_tokens": 2, "messages": messages}, timeout=20)
        assert named.status_code == 400 and kind in named.json()["error"]["message"]
        auto = httpx.post(
            url,
            json={"model": "auto", "max_tokens": 2, "messages": messages, "route": {"allow_remote": True}},
            timeout=20,
        )
        assert auto.status_code == 200 and auto.headers["x-triage-model"] == "local"
        assert "kept local" in auto.headers["x-triage-reason"]
        for response in (only_remote, named, auto):
            assert text not in response.text and text not in str(response.headers)
    assert engines.served("cloud") == before
    everything = caplog.text
    for text in PLANTED.values():
        for fragment in text.split():
            if len(fragment) >= 12:
                assert fragment not in everything, fragment
    metrics = httpx.get(triage.base_url + "/metrics").text
    assert 'triage_privacy_findings_total{kind="card_number"}' in metrics
