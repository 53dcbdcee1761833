"""Daily budgets held in the shared SQLite store, so that every router on one store enforces one budget.

A request made with a key that has a daily budget (`daily_tokens` for local models, `daily_usd` for remote
ones) holds its worst case before any work: `reserve()` runs one `BEGIN IMMEDIATE` transaction that reads what
the key has used today (`budget_day`) and what open requests hold (`budget_holds`, from every process), refuses
if this request does not fit, and else writes its hold. `settle()` runs another that deletes the hold, adds what
was used to the day, and writes the usage row (`key_usage`, the ledger). A request that sets no output cap is
held at what is left of the budget (then `max_tokens` is sent upstream) or at its model's context, whichever
is smaller.

Holds of a process that died are ignored once they expire (`hold_s`: longer than any request may run), so a
crash costs the budget at most that long. All SQLite work runs on one thread of its own: the event loop never
waits on the file lock another router holds (a round trip measures well under a millisecond; see the README).
Knows nothing about HTTP or routing; `tenancy.py` decides which requests need a hold.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..intake import Demand
from .keys import connect
from .ledger import SCHEMA as LEDGER_SCHEMA
from .ledger import utc_day

SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_day (
    key_id TEXT NOT NULL,
    day    TEXT NOT NULL,               -- UTC date, YYYY-MM-DD
    tokens INTEGER NOT NULL,            -- local tokens used (settled)
    usd    REAL NOT NULL,               -- remote dollars used (settled)
    PRIMARY KEY (key_id, day)
);
CREATE TABLE IF NOT EXISTS budget_holds (
    request_id TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    day        TEXT NOT NULL,
    tokens     INTEGER NOT NULL,        -- held against daily_tokens (local models)
    usd        REAL NOT NULL,           -- held against daily_usd (remote models)
    expires    REAL NOT NULL            -- unix seconds; a dead process's holds stop counting after this
);
CREATE INDEX IF NOT EXISTS budget_holds_key ON budget_holds (key_id, day);
"""
_USED = "SELECT tokens, usd FROM budget_day WHERE key_id = ? AND day = ?"
_USED_FROM_LEDGER = (  # a day first seen: start from the ledger (rows written before budgets were held here)
    "INSERT OR IGNORE INTO budget_day (key_id, day, tokens, usd) SELECT ?, ?, "
    "COALESCE(SUM(CASE WHEN remote = 0 THEN tokens ELSE 0 END), 0), COALESCE(SUM(usd), 0.0) "
    "FROM key_usage WHERE day = ? AND key_id = ?"
)
_HELD = "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(usd), 0.0) FROM budget_holds WHERE key_id = ? AND day = ?"
_HOLD = "INSERT INTO budget_holds (request_id, key_id, day, tokens, usd, expires) VALUES (?,?,?,?,?,?)"
_EXPIRED = "DELETE FROM budget_holds WHERE key_id = ? AND expires < ?"
_RELEASE = "DELETE FROM budget_holds WHERE request_id = ?"
_BOOK = (
    "INSERT INTO budget_day (key_id, day, tokens, usd) VALUES (?,?,?,?) ON CONFLICT (key_id, day) "
    "DO UPDATE SET tokens = tokens + excluded.tokens, usd = usd + excluded.usd"
)
_LEDGER_ROW = "INSERT INTO key_usage (request_id, key_id, day, ts, model, remote, tokens, usd) VALUES (?,?,?,?,?,?,?,?)"


@dataclass(frozen=True, slots=True)
class Limit:
    """One key's budget as it applies to one request: in tokens, or in dollars at `usd_per_token`."""

    key_id: str
    daily: float  # tokens, or dollars when remote
    remote: bool
    usd_per_token: float  # the model's price (remote only)


@dataclass(frozen=True, slots=True)
class Used:
    """A key's settled usage on one day."""

    tokens: int
    usd: float


@dataclass(frozen=True, slots=True)
class Hold:
    """What one open request holds in the store."""

    request_id: str
    key_id: str
    day: str
    tokens: int  # the worst case, in tokens (counted against daily_tokens on a local model)
    usd: float  # its price (counted against daily_usd on a remote model)
    max_tokens: int | None  # per sequence, to send upstream (the request set none); None: send nothing
    used: Used  # the key's settled usage that day, when the hold was taken


@dataclass(frozen=True, slots=True)
class Refusal:
    used: Used
    held: Used
    needed_tokens: int  # the least this request needs (its prompts plus one token per sequence, or its cap)


def size_hold(demand: Demand, left_tokens: int) -> tuple[int, int | None] | None:
    """(tokens to hold, max_tokens to send upstream or None) for `demand` with `left_tokens` of budget left; None
    when it does not fit. Pure arithmetic; the rules are the module docstring's."""
    if demand.output_cap is not None:
        need = demand.prompt_tokens + demand.sequences * demand.output_cap
        return (need, None) if need <= left_tokens else None
    ceiling = demand.default_cap if demand.default_cap is not None else demand.room
    affordable = (left_tokens - demand.prompt_tokens) // demand.sequences
    per_sequence = min(ceiling, affordable)
    if per_sequence < 1:
        return None
    # the engine's own default is the ceiling; below it, or when it is a fixed default, say so upstream
    send = per_sequence if (per_sequence < demand.room or demand.default_cap is not None) else None
    return demand.prompt_tokens + demand.sequences * per_sequence, send


def needed_tokens(demand: Demand) -> int:
    return demand.prompt_tokens + demand.sequences * (demand.output_cap or 1)


class BudgetBook:
    """Open with `BudgetBook(path, hold_s)`; `close()` stops its thread. `on_commit(rows)` counts usage rows."""

    def __init__(self, path: str, hold_s: float, on_commit: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.hold_s = hold_s
        self.on_commit = on_commit
        self._conn = connect(path)
        self._conn.executescript(LEDGER_SCHEMA + SCHEMA)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="triage-budget")  # one writer: one connection

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._conn.close()

    async def reserve(self, limit: Limit, request_id: str, demand: Demand) -> Hold | Refusal:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._reserve, limit, request_id, demand, time.time()
        )

    async def settle(self, hold: Hold, model: str, remote: bool, tokens: int, usd: float) -> Used:
        """Free `hold` and book `tokens` (`usd` on a remote model) used on `model`; the day's usage after it.
        Runs to the end even if the caller is cancelled (a hold must not wait for its expiry)."""
        work = asyncio.get_running_loop().run_in_executor(
            self._thread, self._settle, hold, model, remote, tokens, usd, time.time()
        )
        return await asyncio.shield(work)

    def used_today(self, key_id: str) -> Used:
        """Settled usage of `key_id` today (blocking, on the budget thread; for tests and tools)."""
        return self._thread.submit(self._used_today, key_id).result(timeout=10)

    def held_now(self, key_id: str) -> Used:
        """What open requests of `key_id` hold today (blocking, on the budget thread)."""
        return self._thread.submit(self._held, key_id, utc_day()).result(timeout=10)

    # -- on the budget thread ------------------------------------------------------------------------------

    def _transaction(self) -> _Immediate:
        return _Immediate(self._conn)

    def _used(self, key_id: str, day: str) -> Used:
        row = self._conn.execute(_USED, (key_id, day)).fetchone()
        if row is None:
            self._conn.execute(_USED_FROM_LEDGER, (key_id, day, day, key_id))
            row = self._conn.execute(_USED, (key_id, day)).fetchone()
        return Used(int(row[0]), float(row[1]))

    def _used_today(self, key_id: str) -> Used:
        with self._transaction():
            return self._used(key_id, utc_day())

    def _held(self, key_id: str, day: str) -> Used:
        row = self._conn.execute(_HELD, (key_id, day)).fetchone()
        return Used(int(row[0]), float(row[1]))

    def _reserve(self, limit: Limit, request_id: str, demand: Demand, now_s: float) -> Hold | Refusal:
        day = utc_day(now_s)
        with self._transaction():
            self._conn.execute(_EXPIRED, (limit.key_id, now_s))
            used = self._used(limit.key_id, day)
            held = self._held(limit.key_id, day)
            if limit.remote:
                left = int((limit.daily - used.usd - held.usd) / limit.usd_per_token)
            else:
                left = int(limit.daily) - used.tokens - held.tokens
            sized = size_hold(demand, left)
            if sized is None:
                return Refusal(used, held, needed_tokens(demand))
            tokens, max_tokens = sized
            usd = tokens * limit.usd_per_token if limit.remote else 0.0
            hold = Hold(request_id, limit.key_id, day, tokens, usd, max_tokens, used)
            row = (request_id, limit.key_id, day, 0 if limit.remote else tokens, usd, now_s + self.hold_s)
            self._conn.execute(_HOLD, row)
        return hold

    def _settle(self, hold: Hold, model: str, remote: bool, tokens: int, usd: float, now_s: float) -> Used:
        local_tokens = 0 if remote else tokens
        with self._transaction():
            self._conn.execute(_RELEASE, (hold.request_id,))
            self._used(hold.key_id, hold.day)  # the day's row exists before it is added to
            self._conn.execute(_BOOK, (hold.key_id, hold.day, local_tokens, usd))
            if tokens > 0:
                row = (hold.request_id, hold.key_id, hold.day, now_s, model, int(remote), tokens, usd)
                self._conn.execute(_LEDGER_ROW, row)
            used = self._used(hold.key_id, hold.day)
        if tokens > 0 and self.on_commit is not None:
            self.on_commit(1)
        return used


class _Immediate:
    """`with _Immediate(conn):` one BEGIN IMMEDIATE transaction: committed on success, rolled back on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")  # the write lock now: no other router reads between check and hold

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
