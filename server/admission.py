"""Admission control: a global cap on open generation requests, a short bounded wait when everything is busy,
then a 429 with Retry-After. Nothing queues without bound: at most `max_waiting` requests wait, each at most
`admission_wait_s`, so memory stays flat under sustained overload.

Two gates: `enter()` takes one of `server.max_in_flight` global slots (a `Ticket`, released by the request's
`Relay` when it closes); `when_room()` runs a routing plan and, when every eligible model is at its own
`max_in_flight` cap, waits (bounded) for some model to finish a request and decides again. Knows nothing
about HTTP, engines or how a model is chosen. Single event loop: no locks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import AtCapacity, RateLimited
from .telemetry.metrics import Metrics

T = TypeVar("T")


class Ticket:
    """One global slot, owned by one `Relay`; `release()` is idempotent."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._release()


class Admission:
    def __init__(self, max_in_flight: int, wait_s: float, max_waiting: int, metrics: Metrics) -> None:
        self.max_in_flight = max_in_flight
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self.metrics = metrics
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()  # global slot, FIFO
        self._freed: asyncio.Event | None = None  # set whenever some model finishes a request

    # -- the global slot -------------------------------------------------------------------------------

    async def enter(self) -> Ticket:
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return Ticket(self)
        if len(self._waiters) >= self.max_waiting or self.wait_s <= 0:
            raise self._reject(
                "global", f"the router is at its limit of {self.max_in_flight} open requests (server.max_in_flight)"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.metrics.admission_waiting.inc()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.wait_s)
        except TimeoutError:
            if waiter.done():  # handed a slot just as the wait ran out: keep it
                return Ticket(self)
            self._waiters.remove(waiter)
            raise self._reject(
                "global",
                f"no slot freed within {self.wait_s:g} s; the router is at its "
                f"limit of {self.max_in_flight} open requests",
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot handed to us goes to the next one
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        finally:
            self.metrics.admission_waiting.dec()
        return Ticket(self)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight on: in_flight unchanged
                return
        self.in_flight -= 1

    # -- per-model capacity ----------------------------------------------------------------------------

    def model_finished(self) -> None:
        """Some model finished a request: wake the decisions waiting for capacity."""
        if self._freed is not None:
            self._freed.set()
            self._freed = None

    async def when_room(self, plan: Callable[[], Awaitable[T]]) -> T:
        """`await plan()`, retried while it raises `AtCapacity` (all candidates at their cap), within the wait."""
        deadline_s = time.monotonic() + self.wait_s
        while True:
            try:
                return await plan()
            except AtCapacity:
                remaining_s = deadline_s - time.monotonic()
                if remaining_s <= 0:
                    self.metrics.admission_rejected.labels("model_cap").inc()
                    raise
            if self._freed is None:
                self._freed = asyncio.Event()
            freed = self._freed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(freed.wait(), remaining_s)

    def _reject(self, reason: str, message: str) -> RateLimited:
        self.metrics.admission_rejected.labels(reason).inc()
        return RateLimited(message + "; retry later", retry_after_s=max(1.0, self.wait_s * 2))
