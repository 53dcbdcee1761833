"""The usage ledger: one row per answered request made with an API key, in the `key_usage` table.

It is what daily budgets are counted from, so they survive restarts. Writes never block the event loop
(`sqlite_writer.BatchWriter`); `committed` (and the `triage_usage_committed_rows_total` metric, through
`on_commit`) counts rows whose COMMIT returned. Knows nothing about HTTP or limits.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sqlite3
import time
from collections.abc import Callable

from ..sqlite_writer import BatchWriter
from .keys import connect

log = logging.getLogger(__name__)

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
        self._reader = connect(path)
        self._reader.executescript(SCHEMA)
        writer_conn = connect(path)
        self._writer: BatchWriter[Row] = BatchWriter(writer_conn, _insert, "usage-ledger", on_commit)

    @property
    def committed(self) -> int:
        return self._writer.committed

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def record(self, request_id: str, key_id: str, model: str, remote: bool, tokens: int, usd: float) -> None:
        now = time.time()
        self._writer.put((request_id, key_id, utc_day(now), now, model, int(remote), tokens, usd))

    def today(self) -> dict[str, tuple[int, float]]:
        """key id -> (local tokens, remote dollars) used so far this UTC day."""
        rows = self._reader.execute(
            "SELECT key_id, SUM(CASE WHEN remote = 0 THEN tokens ELSE 0 END), SUM(usd) FROM key_usage "
            "WHERE day = ? GROUP BY key_id",
            (utc_day(),),
        ).fetchall()
        return {str(k): (int(t or 0), float(u or 0.0)) for k, t, u in rows}

    def count(self) -> int:
        return int(self._reader.execute("SELECT COUNT(*) FROM key_usage").fetchone()[0])

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every row queued so far is committed (tests, shutdown)."""
        self._writer.flush(timeout_s)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def _insert(conn: sqlite3.Connection, rows: list[Row]) -> None:
    conn.executemany(_INSERT, rows)
