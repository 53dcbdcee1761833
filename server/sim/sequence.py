"""`Sequence`: one request inside a simulated engine, and the handle its consumer awaits tokens on.

The engine's step loop moves a sequence through FRONTEND -> WAITING -> RUNNING -> FINISHED and wakes its
consumer with one future per step at most (asyncio clock), or calls its `on_finish` hook (any clock); the
consumer reads how many tokens exist, never the text. Knows nothing about HTTP, the latency model or the text
of the tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum

from server.sim.clock import Timer


class SeqState(Enum):
    FRONTEND = "frontend"  # in the API-server delay, not yet seen by the scheduler
    WAITING = "waiting"  # in the scheduler's FIFO queue
    RUNNING = "running"  # admitted: prefilling or decoding
    FINISHED = "finished"  # done, cancelled or aborted; see finish_reason


class Sequence:
    """Bookkeeping of one request; the engine mutates it, the consumer awaits `next_tokens`."""

    __slots__ = (
        "_on_cancel",
        "_only_done",
        "_timer",
        "_waiter",
        "admitted_s",
        "arrival_s",
        "finish_reason",
        "first_token_s",
        "generated",
        "max_tokens",
        "on_finish",
        "prefill_left",
        "prompt_tokens",
        "seq_id",
        "state",
        "target_tokens",
    )

    def __init__(
        self,
        seq_id: int,
        prompt_tokens: int,
        max_tokens: int,
        target_tokens: int,
        arrival_s: float,
        on_cancel: Callable[[Sequence], None],
        on_finish: Callable[[Sequence], None] | None = None,
    ) -> None:
        self.seq_id = seq_id
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens  # the request's limit
        self.target_tokens = target_tokens  # tokens this reply will have unless cut short
        self.arrival_s = arrival_s  # the engine's clock (loop.time() or virtual), seconds
        self.admitted_s: float | None = None
        self.first_token_s: float | None = None
        self.generated = 0  # output tokens produced so far
        self.prefill_left = prompt_tokens  # prompt tokens not yet prefilled
        self.state = SeqState.FRONTEND
        self.finish_reason: str | None = None  # "stop" | "length" | "abort"
        self._waiter: asyncio.Future[None] | None = None
        self._timer: Timer | None = None  # the front-end delay, while in FRONTEND
        self._on_cancel = on_cancel
        self.on_finish = on_finish  # called by the engine once, after the sequence finished
        self._only_done = False  # set by wait_done: skip per-token wake-ups

    @property
    def done(self) -> bool:
        return self.state is SeqState.FINISHED

    @property
    def aborted(self) -> bool:
        return self.finish_reason == "abort"

    async def next_tokens(self, have: int) -> int:
        """Wait until more than `have` tokens exist or the sequence is done; return the token count.

        Cancelling the awaiting task leaves the sequence alone; call `cancel()` (e.g. in a `finally`).
        """
        if self.generated <= have and self.state is not SeqState.FINISHED:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            await waiter
        return self.generated

    async def wait_done(self) -> None:
        """Wait until finished (complete, cancelled or aborted): one wake-up, not one per token."""
        self._only_done = True
        have = 0
        while self.state is not SeqState.FINISHED:
            have = await self.next_tokens(have)

    def cancel(self) -> None:
        """The consumer gives up: leave the engine at once; a no-op once finished."""
        if self.state is not SeqState.FINISHED:
            self._on_cancel(self)

    def progress(self) -> None:
        """Called by the engine after it added tokens; wakes a consumer that reads tokens as they come."""
        if not self._only_done:
            self.wake()

    def wake(self) -> None:
        """Called by the engine after it changed `state` (and by `progress`)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
