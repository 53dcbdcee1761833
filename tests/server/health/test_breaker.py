"""Circuit breaker: the state machine alone, its count of request failures as the policies see it, then a failing
engine routed around by `auto` requests."""

from __future__ import annotations

import httpx

from server.config import BreakerConfig, parse_config
from server.health import Breakers, BreakerState, CircuitBreaker
from server.load import LoadBoard
from server.policy.eligibility import ineligible_reason
from server.telemetry.metrics import Metrics
from tests.server.policy.policykit import request, trio

from ..conftest import free_port, run_triage, sim_model


def state_of(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read through a call: the state changes inside available()


def test_opens_after_consecutive_failures_then_half_open_probe() -> None:
    breaker = CircuitBreaker(failures_to_open=3, cooldown_s=5.0, max_cooldown_s=20.0)
    assert not breaker.on_failure(0.0) and not breaker.on_failure(0.1)
    breaker.on_success()  # a success in between resets the count
    assert not breaker.on_failure(0.2) and not breaker.on_failure(0.3)
    assert breaker.on_failure(0.4)
    assert breaker.state is BreakerState.OPEN and not breaker.available(1.0)
    assert breaker.available(5.5) and state_of(breaker) is BreakerState.HALF_OPEN
    breaker.on_attempt(5.5)  # the probe: nobody else gets through while it runs
    assert not breaker.available(5.6)
    assert breaker.on_failure(6.0)  # the probe failed: open again, twice as long
    assert breaker.state is BreakerState.OPEN and breaker.current_cooldown_s == 10.0
    assert not breaker.available(15.9) and breaker.available(16.1)
    breaker.on_attempt(16.1)
    breaker.on_success()
    assert state_of(breaker) is BreakerState.CLOSED and breaker.available(16.2)


def test_cooldown_is_capped() -> None:
    breaker = CircuitBreaker(failures_to_open=1, cooldown_s=4.0, max_cooldown_s=10.0)
    now = 0.0
    breaker.on_failure(now)
    for _ in range(5):
        now = breaker.open_until_s
        assert breaker.available(now)
        breaker.on_attempt(now)
        breaker.on_failure(now)
    assert breaker.current_cooldown_s == 10.0


def test_board_publishes_open_breaker_to_load_and_metrics() -> None:
    load, metrics = LoadBoard(), Metrics()
    breakers = Breakers(["a"], BreakerConfig(failures=2, cooldown_s=30.0), load, metrics)
    breakers.failure("a")
    assert load.engine("a").breaker_open_until_s == 0.0
    breakers.failure("a")
    assert load.engine("a").breaker_open_until_s > 0 and not breakers.available("a")
    assert b'triage_breaker_state{model="a"} 1.0' in metrics.render()
    assert b'triage_breaker_opens_total{model="a"} 1.0' in metrics.render()


def test_failing_engine_is_routed_around_once_its_breaker_opens() -> None:
    failing = sim_model("flaky", ["fast"], free_port(), faults={"error_rate": 1.0})
    healthy = sim_model("steady", ["chat"], free_port())
    config = parse_config(
        {"models": [failing, healthy], "breaker": {"failures": 3, "cooldown_s": 60}, "policy": {"name": "static"}}
    )
    question = [{"role": "user", "content": "What is the capital of France?"}]  # general_qa -> 'fast' role
    body = {"model": "auto", "max_tokens": 2, "messages": question}
    with run_triage(config) as triage:
        served_by = []
        for _ in range(8):
            response = httpx.post(triage.base_url + "/v1/chat/completions", json=body, timeout=20)
            assert response.status_code == 200, response.text  # every failure fell back before the first byte
            served_by.append(response.headers["x-triage-reason"])
        assert "flaky" in served_by[0] and "fell back" in served_by[0]
        assert all("fell back" not in reason for reason in served_by[3:]), served_by  # breaker open: no retries
        route = httpx.post(triage.base_url + "/v1/route", json=body, timeout=20).json()
        flaky = next(c for c in route["candidates"] if c["model"] == "flaky")
        assert not flaky["eligible"] and "circuit breaker" in flaky["reason"]
        named = httpx.post(triage.base_url + "/v1/chat/completions", json={**body, "model": "flaky"}, timeout=20)
        assert named.status_code == 503 and "circuit breaker" in named.json()["error"]["message"]
        assert int(named.headers["retry-after"]) >= 1


def test_request_failures_are_counted_once_and_rule_the_engine_out_for_every_policy() -> None:
    load, metrics = LoadBoard(), Metrics()
    coder = trio()[0]
    breakers = Breakers([coder.name], BreakerConfig(failures=3, cooldown_s=30.0), load, metrics)
    for _ in range(2):
        breakers.failure(coder.name)
    breakers.success(coder.name)  # an answer in between: the count starts over
    for n in range(1, 4):
        assert ineligible_reason(coder, load.engine(coder.name), request("code"), False) is None
        breakers.failure(coder.name)
        assert breakers.breakers[coder.name].consecutive_failures == n
    reason = ineligible_reason(coder, load.engine(coder.name), request("code"), False)
    assert reason is not None and "circuit breaker open" in reason
