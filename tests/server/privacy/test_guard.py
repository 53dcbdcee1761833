"""`PrivacyGuard.screen()`: inline for small bodies, in the pool for large ones, never "clean" for what it could
not read (too long, too slow, token ids)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from server.config import PrivacyConfig
from server.errors import NestingTooDeep
from server.privacy import SCAN_TIMEOUT, TOKEN_IDS, UNSCANNED, PrivacyGuard, Screening
from server.privacy.guard import INLINE_MAX_CHARS


def chat(text: str) -> dict[str, object]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


@pytest.fixture
def guard() -> Iterator[PrivacyGuard]:
    guard = PrivacyGuard(PrivacyConfig(patterns={"employee_id": r"\bEMP-\d{6}\b"}))
    yield guard
    guard.close()


async def test_small_bodies_inline_large_ones_in_the_pool(guard: PrivacyGuard) -> None:
    small = await guard.screen(chat("ticket for EMP-123456, mail maria@example.org"))
    assert small == Screening(("email", "employee_id"), small.chars, small.elapsed_s, threaded=False)
    large = await guard.screen(chat("x " * INLINE_MAX_CHARS + "EMP-123456"))
    assert large.kinds == ("employee_id",) and large.threaded
    clean = await guard.screen(chat("What is the capital of France?"))
    assert clean.clean and not clean.unscannable


async def test_the_event_loop_runs_while_a_large_body_is_scanned(guard: PrivacyGuard) -> None:
    ticks = 0
    scanning = True

    async def tick() -> None:
        nonlocal ticks
        while scanning:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    screening = await guard.screen(chat("4111 " * 40_000))
    scanning = False
    await ticker
    assert screening.threaded and ticks > 1


async def test_what_cannot_be_read_is_never_clean(guard: PrivacyGuard) -> None:
    too_long = PrivacyGuard(PrivacyConfig(max_scan_chars=100))
    assert (await too_long.screen(chat("x" * 200))).kinds == (UNSCANNED,)
    assert (await too_long.screen(chat("\ufdfa" * 20))).kinds == (UNSCANNED,)  # NFKC makes it 360 characters
    token_ids = await guard.screen({"model": "auto", "prompt": [[40, 1101], [318, 286]]})
    assert token_ids.kinds == (TOKEN_IDS,) and token_ids.unscannable
    assert guard.scan_payload({"prompt": [40, 1101], "metadata": {"m": "maria@example.org"}}) == ["email", TOKEN_IDS]


async def test_past_the_deadline_fails_closed() -> None:
    """A scan that runs out of time says scan_timeout (kept local), in the pool and inline alike."""
    slow = PrivacyGuard(PrivacyConfig(max_scan_ms=0.001))
    try:
        threaded = await slow.screen(chat("plain words " * 2000))
        assert threaded.threaded and threaded.kinds == (SCAN_TIMEOUT,) and threaded.unscannable
        assert slow.scan_payload(chat("plain words")) == [SCAN_TIMEOUT]
    finally:
        slow.close()


async def test_a_stuck_scan_thread_is_not_waited_for(guard: PrivacyGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past twice the deadline the caller gets scan_timeout even if the thread is still inside `re`."""

    def stuck(*args: object, **kwargs: object) -> Screening:
        time.sleep(0.5)  # stands in for a user pattern that holds `re` for long
        return Screening((), 0, 0.5, True)

    monkeypatch.setattr(guard, "max_scan_s", 0.02)
    monkeypatch.setattr(guard, "inspect", stuck)
    screening = await guard.screen(chat("x " * INLINE_MAX_CHARS))
    assert screening.kinds == (SCAN_TIMEOUT,) and screening.threaded


async def test_nesting_too_deep_is_raised_from_both_paths(guard: PrivacyGuard) -> None:
    deep: object = "x"
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(NestingTooDeep):
        await guard.screen({"messages": deep})
    with pytest.raises(NestingTooDeep):
        await guard.screen({"messages": ["y" * INLINE_MAX_CHARS, deep]})


async def test_disabled_guard_reads_nothing() -> None:
    off = PrivacyGuard(PrivacyConfig(enabled=False))
    assert (await off.screen(chat("maria@example.org"))).clean
    assert off.scan_payload({"prompt": [1, 2, 3]}) == []
