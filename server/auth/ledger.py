"""The usage ledger: one row per answered request made with an API key, in the `key_usage` table.

It is what daily budgets are counted from, so they survive restarts. Writes never block the event loop: rows go
on a bounded queue and one writer thread commits them in batches (same scheme as the policy store). A row
counts as *committed* only once its transaction's COMMIT has returned; `committed` (and the
`triage_usage_committed_rows_total` metric, through `on_commit`) counts exactly those, so a crash can lose rows
that were queued but never rows that were reported committed. Knows nothing about HTTP or limits.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable

from .keys import connect

log = logging.getLogger(__name__)

QUEUE_MAX = 20_000  # rows waiting for the writer; beyond this rows are dropped and counted
BATCH = 512  # rows per transaction at most
FLUSH_S = 0.05  # the writer commits at least this often while rows arrive

SCHEMA = """
CREATE TABLE IF NOT EXISTS key_usage (
    request_id TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    day        TEXT NOT NULL,      -- UTC date, YYYY-MM-DD
    ts         REAL NOT NULL,      -- unix seconds
    model      TEXT NOT NULL,
    remote     INTEGER NOT NULL,
    tokens     INTEGER NOT NULL,   -- prompt estimate + requested output
    usd        REAL NOT NULL       -- remote cost estimate, dollars
);
CREATE INDEX IF NOT EXISTS key_usage_day ON key_usage (day, key_id);
"""
_INSERT = "INSERT INTO key_usage (request_id, key_id, day, ts, model, remote, tokens, usd) VALUES (?,?,?,?,?,?,?,?)"
Row = tuple[str, str, str, float, str, int, int, float]


def utc_day(ts: float | None = None) -> str:
    return _day_name(int((time.time() if ts is None else ts) // 86400))


@functools.lru_cache(maxsize=4)
def _day_name(epoch_day: int) -> str:  # formatting costs microseconds; a day changes once a day
    return dt.datetime.fromtimestamp(epoch_day * 86400, dt.UTC).strftime("%Y-%m-%d")


class UsageLedger:
    """Open with `UsageLedger(path)`; `close()` commits what is queued and stops the writer."""

    def __init__(self, path: str, on_commit: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.on_commit = on_commit
        self.dropped = 0
        self.committed = 0
        self._queue: queue.Queue[Row | None] = queue.Queue(QUEUE_MAX)
        self._reader = connect(path)
        self._reader.executescript(SCHEMA)
        self._writer = threading.Thread(target=self._write_loop, args=(connect(path),), name="triage-usage",
                                        daemon=True)
        self._writer.start()

    def record(self, request_id: str, key_id: str, model: str, remote: bool, tokens: int, usd: float) -> None:
        now = time.time()
        try:
            self._queue.put_nowait((request_id, key_id, utc_day(now), now, model, int(remote), tokens, usd))
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("usage ledger queue full: %d rows dropped so far (disk too slow?)", self.dropped)

    def today(self) -> dict[str, tuple[int, float]]:
        """key id -> (local tokens, remote dollars) used so far this UTC day."""
        rows = self._reader.execute(
            "SELECT key_id, SUM(CASE WHEN remote = 0 THEN tokens ELSE 0 END), SUM(usd) FROM key_usage "
            "WHERE day = ? GROUP BY key_id", (utc_day(),)).fetchall()
        return {str(k): (int(t or 0), float(u or 0.0)) for k, t, u in rows}

    def count(self) -> int:
        return int(self._reader.execute("SELECT COUNT(*) FROM key_usage").fetchone()[0])

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                batch = [item]
                deadline = time.monotonic() + FLUSH_S
                while len(batch) < BATCH and item is not None:
                    try:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    batch.append(item)
                stop = batch[-1] is None
                self._commit(conn, [row for row in batch if row is not None])
                for _ in batch:
                    self._queue.task_done()
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, rows: list[Row]) -> None:
        if not rows:
            return
        try:
            conn.execute("BEGIN")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("usage ledger write of %d rows failed; they are lost", len(rows))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return
        self.committed += len(rows)
        if self.on_commit is not None:
            self.on_commit(len(rows))

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every row queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks > 0 and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=10.0)
        self._reader.close()
