"""The console's memory of recent decisions: a bounded ring of the requests the gateway committed, each finished
in place when its relay closes.

The request path feeds it with O(1) work and no serialisation: `add()` at commit keeps references to what the
plan already holds (the policy's `Decision` with its candidates, the reason) and two scalars of the
classification; `finish()` at the relay's close sets the outcome, the model that answered, time to first byte
and latency on the same object and queues one small tuple for the console's rolling windows. Nothing is turned
into JSON here: the console does that only when a client asks. The prompt is never kept (the plan's
`RouteRequest` is not referenced). Single event loop: no locks.

Knows nothing about HTTP, how a policy decides, or how the console draws any of it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..policy import Decision
    from ..relay import Plan

CAPACITY = 500  # decisions the live table can show and a click can explain
CLOSED_CAPACITY = 16_384  # finished requests waiting to be folded into the windows (the console drains each second)


@dataclass(slots=True, eq=False)
class Recorded:
    """One committed request as the console shows it; the fields after `version` change once, at its close."""

    seq: int  # commit order, from 1
    request_id: str
    ts: float  # unix seconds at commit
    endpoint: str  # chat | completions
    stream: bool
    category: str
    complexity: float
    planned: str  # the model the plan chose (after exploration)
    reason: str
    overflow: bool
    explored: bool
    decision: Decision | None  # a reference (None when the client named the model): candidates on demand
    private: list[str]  # kinds the privacy guard found, never the text
    key_id: str | None
    version: int  # bumped on every change: what a console client has already seen
    model: str = ""  # the model that answered, or was tried last; "" while in flight
    outcome: str = ""  # an `Outcome` value once closed; "" while in flight
    ttft_s: float | None = None  # receipt to first byte sent (non-streamed: the whole answer)
    latency_s: float | None = None  # receipt to close
    feedback: float | None = None  # the client's score, once given


class Closed(NamedTuple):
    """What the rolling windows need of one finished request."""

    at_s: float  # time.monotonic() at close
    model: str
    category: str
    overflow: bool
    outcome: str
    ttft_s: float | None


class RecentDecisions:
    """The last `capacity` committed requests, by id too; finished ones also queued for the windows."""

    def __init__(self, capacity: int = CAPACITY, closed_capacity: int = CLOSED_CAPACITY) -> None:
        self.entries: deque[Recorded] = deque(maxlen=capacity)
        self.by_id: dict[str, Recorded] = {}
        self.closed: deque[Closed] = deque(maxlen=closed_capacity)
        self.closed_total = 0  # finished requests ever queued (a reader that fell behind sees what it missed)
        self.version = 0
        self._seq = 0

    def add(self, request_id: str, endpoint: str, stream: bool, plan: Plan, key_id: str | None = None) -> Recorded:
        """Record a committed request (call once, at commit); returns the entry its relay finishes."""
        self._seq += 1
        self.version += 1
        decision = plan.decision
        entry = Recorded(
            self._seq,
            request_id,
            time.time(),
            endpoint,
            stream,
            plan.classification.category,
            plan.classification.complexity,
            plan.model.name,
            plan.reason,
            decision is not None and decision.overflow,
            decision is not None and decision.explored,
            decision,
            plan.private,
            key_id,
            self.version,
        )
        entries = self.entries
        if len(entries) == entries.maxlen:
            self.by_id.pop(entries[0].request_id, None)  # about to fall off the ring
        entries.append(entry)
        self.by_id[request_id] = entry
        return entry

    def finish(self, entry: Recorded, outcome: str, model: str, ttft_s: float | None, latency_s: float) -> None:
        """The request closed: how it ended, on which model, its time to first byte and latency (seconds)."""
        self.version += 1
        entry.version = self.version
        entry.outcome, entry.model, entry.ttft_s, entry.latency_s = outcome, model, ttft_s, latency_s
        self.closed.append(Closed(time.monotonic(), model, entry.category, entry.overflow, outcome, ttft_s))
        self.closed_total += 1

    def feedback(self, request_id: str, score: float) -> None:
        """An accepted feedback score for a request still in the ring (older ones are only in the audit log)."""
        entry = self.by_id.get(request_id)
        if entry is not None:
            self.version += 1
            entry.version = self.version
            entry.feedback = score

    def changed_since(self, version: int, limit: int) -> list[Recorded]:
        """Entries added or changed after `version`, newest first, at most `limit`."""
        out: list[Recorded] = []
        for entry in reversed(self.entries):
            if entry.version > version:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def drain_closed(self) -> list[Closed]:
        """Finished requests queued since the last drain, oldest first."""
        out = list(self.closed)
        self.closed.clear()
        return out
