"""One background task that calls a function every few seconds, for the router's periodic work (engine probes,
NVML readings, API-key reloads, the console's windows).

A tick that raises is logged and the next one runs on time: a bug in one reading must not stop the readings.
`stop()` cancels the task and waits for it; it is safe to call twice or before `start()`. Knows nothing about
what the ticks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, interval_s: float, tick: Callable[[], Awaitable[None] | None], name: str) -> None:
        """`tick` is called every `interval_s` seconds after `start()` (a coroutine function is awaited)."""
        self.interval_s = interval_s
        self.tick = tick
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                pending = self.tick()
                if pending is not None:
                    await pending
            except Exception:
                log.exception("%s: a periodic tick failed; the next one runs on time", self.name)
