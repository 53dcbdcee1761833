"""The clocks a simulated engine can run on: asyncio's event loop (wall time) or `VirtualClock` (virtual time).

A `Clock` is the part of asyncio's loop API the engine uses: `time()`, `call_at()` and `call_later()`, each
call returning a handle with `cancel()`. The served simulator passes the running event loop itself;
discrete-event benchmarks pass a `VirtualClock`, which jumps from one scheduled callback to the next, so an
hour of engine time costs only the CPU of its callbacks. Knows nothing about engines, requests or latency.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any, Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What `SimEngine` needs of a clock; `asyncio.AbstractEventLoop` has it."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer: ...


class VirtualClockError(RuntimeError):
    """A callback was scheduled in the past, or a run did not finish within its event budget."""


class VirtualTimer:
    """One scheduled callback; `cancel()` makes the clock skip it."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when  # virtual seconds
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Discrete-event time: callbacks run in (time, scheduling order); `time()` is the current event's time."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s
        self._heap: list[tuple[float, int, VirtualTimer]] = []  # (when, sequence number, timer)
        self._serial = 0

    def time(self) -> float:
        return self._now_s

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> VirtualTimer:
        if when < self._now_s:
            raise VirtualClockError(f"cannot schedule at {when:.6f} s, the clock already reads {self._now_s:.6f} s")
        timer = VirtualTimer(when, callback, args)
        self._serial += 1
        heapq.heappush(self._heap, (when, self._serial, timer))
        return timer

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> VirtualTimer:
        return self.call_at(self._now_s + max(0.0, delay), callback, *args)

    @property
    def pending(self) -> int:
        """Scheduled callbacks, cancelled ones included until they come due."""
        return len(self._heap)

    def run_until(self, end_s: float, max_events: int) -> int:
        """Run every callback due at or before `end_s` (and those they schedule); the clock then reads `end_s`.

        Returns the callbacks run; raises `VirtualClockError` past `max_events`, so a runaway loop ends.
        """
        heap = self._heap
        ran = 0
        while heap and heap[0][0] <= end_s:
            when, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            ran += 1
            if ran > max_events:
                raise VirtualClockError(f"more than {max_events} callbacks before {end_s} s; raise the budget")
            self._now_s = when
            timer.callback(*timer.args)
        self._now_s = max(self._now_s, end_s)
        return ran
