"""Stored Responses-API answers (`store: true`), so that a later request can continue with `previous_response_id`.

One SQLite table (a file, or memory when `responses.store` is null). Each row is one response: its own new input
items and its output items (JSON), the response it continued from (`parent`), the API key that made it, and an
expiry. A conversation is read back by walking the parents in one recursive query, so a long conversation costs
linear space. Rows are visible only to the key that wrote them; expired rows and, past `responses.max_mb`, the
oldest rows are deleted (a conversation whose earlier response is gone can no longer be continued). Reads and
writes run in a worker thread, never on the event loop; a write completes before the answer that names its id is
sent, so the client can continue from it at once. Knows nothing about HTTP, routing or the protocol's fields.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from typing import Any

import orjson

from ..config import ResponsesConfig

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id       TEXT PRIMARY KEY,   -- resp_..., as the client saw it
    key_id   TEXT,               -- the API key that made it (NULL in open mode)
    parent   TEXT,               -- previous_response_id, or NULL
    created  REAL NOT NULL,      -- unix seconds
    expires  REAL NOT NULL,      -- unix seconds
    size     INTEGER NOT NULL,   -- bytes of items
    items    BLOB NOT NULL       -- JSON list: this request's input items, then its output items
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created);
"""
_CHAIN = """
WITH RECURSIVE chain(id, parent, items, depth) AS (
    SELECT id, parent, items, 0 FROM responses WHERE id = ? AND key_id IS ? AND expires > ?
    UNION ALL
    SELECT r.id, r.parent, r.items, chain.depth + 1 FROM responses r JOIN chain ON r.id = chain.parent
    WHERE r.key_id IS ? AND chain.depth < ?
)
SELECT parent, items FROM chain ORDER BY depth DESC
"""
MAX_DEPTH = 10_000  # turns in one conversation
_EVICT_BATCH = 64  # rows deleted at a time once over max_mb


class ResponseStore:
    def __init__(self, path: str, ttl_s: float, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()  # one connection, used from worker threads one at a time
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0])

    @classmethod
    def open(cls, config: ResponsesConfig) -> ResponseStore:
        return cls(config.store or ":memory:", config.ttl_s, int(config.max_mb * 1024 * 1024))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    async def save(self, response_id: str, key_id: str | None, parent: str | None, items: list[Any]) -> None:
        await asyncio.to_thread(self._save, response_id, key_id, parent, orjson.dumps(items))

    async def conversation(self, response_id: str, key_id: str | None) -> list[Any] | None:
        """Every item of the conversation up to and including `response_id`, oldest first; None when that
        response is unknown to this key, expired, or continues one that is gone."""
        return await asyncio.to_thread(self._conversation, response_id, key_id)

    def _save(self, response_id: str, key_id: str | None, parent: str | None, items: bytes) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (id, key_id, parent, created, expires, size, items) "
                "VALUES (?,?,?,?,?,?,?)",
                (response_id, key_id, parent, now, now + self.ttl_s, len(items), items),
            )
            self._bytes += len(items)
            if self._bytes > self.max_bytes:
                self._evict(now)

    def _evict(self, now: float) -> None:
        """Expired rows first, then the oldest, until the table is under max_bytes (bounded work)."""
        self._db.execute("DELETE FROM responses WHERE expires <= ?", (now,))
        total = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0])
        for _ in range(1000):
            if total <= self.max_bytes:
                break
            oldest = self._db.execute(
                "SELECT id, size FROM responses ORDER BY created LIMIT ?", (_EVICT_BATCH,)
            ).fetchall()
            if not oldest:
                break
            self._db.executemany("DELETE FROM responses WHERE id = ?", [(rid,) for rid, _ in oldest])
            total -= sum(size for _, size in oldest)
        log.info("response store over %d bytes: evicted down to %d", self.max_bytes, total)
        self._bytes = total

    def _conversation(self, response_id: str, key_id: str | None) -> list[Any] | None:
        with self._lock:
            rows = self._db.execute(_CHAIN, (response_id, key_id, time.time(), key_id, MAX_DEPTH)).fetchall()
        if not rows or rows[0][0] is not None:  # unknown, or the first response of the chain is gone
            return None
        items: list[Any] = []
        for _, chunk in rows:
            items.extend(orjson.loads(chunk))
        return items
