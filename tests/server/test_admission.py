"""Admission control: bounded global slots, a bounded wait, then 429 with Retry-After; never unbounded queues."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter

import httpx
import pytest

from server.admission import Admission
from server.config import parse_config
from server.errors import AtCapacity, RateLimited
from server.telemetry.metrics import Metrics

from .conftest import free_port, run_triage, sim_model


async def test_slots_wait_and_reject() -> None:
    admission = Admission(max_in_flight=2, wait_s=0.2, max_waiting=1, metrics=Metrics())
    a, b = await admission.enter(), await admission.enter()
    waiter = asyncio.ensure_future(admission.enter())
    await asyncio.sleep(0.01)
    with pytest.raises(RateLimited) as over:  # one waits already: the next is refused at once
        await admission.enter()
    assert over.value.headers["retry-after"] == "1"
    a.release()
    c = await waiter  # the released slot passed straight to the waiter
    assert admission.in_flight == 2
    with pytest.raises(RateLimited):  # nobody releases within wait_s
        await admission.enter()
    for ticket in (b, c, c):  # release is idempotent
        ticket.release()
    assert admission.in_flight == 0 and not admission._waiters


async def test_cancelled_waiter_leaves_no_trace() -> None:
    admission = Admission(max_in_flight=1, wait_s=5.0, max_waiting=4, metrics=Metrics())
    held = await admission.enter()
    waiter = asyncio.ensure_future(admission.enter())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.release()
    assert admission.in_flight == 0 and not admission._waiters


async def test_when_room_waits_for_a_model_slot() -> None:
    admission = Admission(max_in_flight=8, wait_s=1.0, max_waiting=8, metrics=Metrics())
    full = [True]

    async def decide() -> str:
        if full[0]:
            raise AtCapacity("at cap")
        return "model"

    async def free_later() -> None:
        await asyncio.sleep(0.05)
        full[0] = False
        admission.model_finished()

    freeing = asyncio.ensure_future(free_later())
    assert await admission.when_room(decide) == "model"
    await freeing
    full[0] = True
    with pytest.raises(AtCapacity):
        await Admission(8, 0.05, 8, Metrics()).when_room(decide)


async def test_when_room_does_not_wait_on_other_rate_limits() -> None:
    calls = 0

    async def decide() -> str:
        nonlocal calls
        calls += 1
        raise RateLimited("key over its limit")

    with pytest.raises(RateLimited):
        await Admission(8, 1.0, 8, Metrics()).when_room(decide)
    assert calls == 1


def test_overload_gets_only_successes_and_429s() -> None:
    model = sim_model("only", ["chat"], free_port(), time_scale=1.0)
    model["max_in_flight"] = 4
    config = parse_config(
        {"models": [model], "server": {"max_in_flight": 6, "admission_wait_s": 0.1, "max_waiting": 2}}
    )
    body = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hello there"}]}
    with run_triage(config) as triage:

        def one(_: int) -> tuple[int, str | None]:
            r = httpx.post(triage.base_url + "/v1/chat/completions", json=body, timeout=20)
            return r.status_code, r.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            results = list(pool.map(one, range(72)))
        statuses = Counter(status for status, _ in results)
        assert set(statuses) <= {200, 429}, statuses
        assert statuses[200] > 0 and statuses[429] > 0, statuses
        assert all(retry and int(retry) >= 1 for status, retry in results if status == 429)
        guard = triage.gateway.guard
        assert guard.admission.in_flight == 0 and not guard.admission._waiters
        assert triage.gateway.load.engine("only").in_flight == 0
        metrics = httpx.get(triage.base_url + "/metrics").text
        assert "triage_admission_rejected_total" in metrics
