"""SQLite plumbing shared by the decision store and the usage ledger: WAL connections, and a writer thread that
commits queued rows in batches so that the event loop never waits on the disk.

`BatchWriter.put()` never blocks: when the bounded queue is full the row is dropped and counted. A row counts as
*committed* only once its transaction's COMMIT has returned (`committed`, `on_commit`), so a crash can lose
rows that were queued but never rows reported committed. Knows nothing about what the rows mean.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Row = TypeVar("Row")
QUEUE_MAX = 20_000  # rows waiting for the writer; beyond this rows are dropped (and counted)
BATCH = 512  # rows per transaction at most
FLUSH_S = 0.05  # the writer commits at least this often while rows arrive


def connect(
    path: str, schema: str = "", table: str = "", added_columns: Mapping[str, str] | None = None
) -> sqlite3.Connection:
    """A connection in WAL mode with `schema` applied and `table` given any of `added_columns` (name -> SQL type)
    it lacks, so that a file made by an older Triage opens with the current schema (columns are added, never
    dropped). Raises sqlite3.Error or OSError."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: committed rows survive a process crash
    if schema:
        conn.executescript(schema)
    if added_columns:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column, kind in added_columns.items():
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                log.info("%s: added column %s.%s (file made by an older Triage)", path, table, column)
    return conn


class BatchWriter(Generic[Row]):
    """One writer thread: `write(conn, rows)` runs inside one transaction per batch."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        write: Callable[[sqlite3.Connection, list[Row]], None],
        name: str,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.write = write
        self.name = name
        self.on_commit = on_commit
        self.committed = 0
        self.dropped = 0
        self._queue: queue.Queue[Row | None] = queue.Queue(QUEUE_MAX)
        self._thread = threading.Thread(target=self._loop, args=(conn,), name=f"triage-{name}", daemon=True)
        self._thread.start()

    def put(self, row: Row) -> None:
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("%s queue full: %d rows dropped so far (disk too slow?)", self.name, self.dropped)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every row queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks > 0 and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self._queue.put(None)  # blocks only if full, at shutdown
        self._thread.join(timeout=10.0)

    def _loop(self, conn: sqlite3.Connection) -> None:
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
            self.write(conn, rows)
            conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("%s write of %d rows failed; they are lost", self.name, len(rows))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return
        self.committed += len(rows)
        if self.on_commit is not None:
            self.on_commit(len(rows))
