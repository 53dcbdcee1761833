"""The shared periodic task: ticks keep coming after one fails, and stop() ends the task (twice is fine)."""

from __future__ import annotations

import asyncio

from server.ticker import Ticker


def test_a_failing_tick_does_not_stop_the_ticks_and_stop_ends_them() -> None:
    calls: list[int] = []

    def tick() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("first tick fails")

    async def main() -> None:
        ticker = Ticker(0.001, tick, "test-ticker")
        ticker.start()
        for _ in range(2000):  # bounded: at most ~2 s of polling
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.001)
        await ticker.stop()
        seen = len(calls)
        await asyncio.sleep(0.01)
        assert len(calls) == seen  # no tick after stop
        await ticker.stop()

    asyncio.run(main())
    assert len(calls) >= 3


def test_a_coroutine_tick_is_awaited() -> None:

    async def main() -> int:
        hits: list[int] = []

        async def tick() -> None:
            await asyncio.sleep(0)
            hits.append(1)

        ticker = Ticker(0.001, tick, "test-async-ticker")
        ticker.start()
        for _ in range(2000):
            if hits:
                break
            await asyncio.sleep(0.001)
        await ticker.stop()
        return len(hits)

    assert asyncio.run(main()) >= 1
