"""The embedded SQLite store (WAL mode): the decision audit log and the feedback statistics.

Writes never block the event loop: small tuples go to a `sqlite_writer.BatchWriter`, whose thread commits
them in batches; a full queue drops and counts rows rather than waiting. Reads (start-up statistics, a
feedback lookup, `triage decisions`) use their own connection; WAL lets them run beside the writer. Prompts
are stored as a SHA-256 hash unless `keep_prompts`, and hashed in the writer thread. Knows nothing about
routing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sqlite_writer import BatchWriter, connect

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    request_id  TEXT PRIMARY KEY,       -- minted by the router, never the client's
    ts          REAL NOT NULL,          -- unix seconds
    category    TEXT NOT NULL,
    complexity  REAL NOT NULL,
    prompt_hash TEXT NOT NULL,          -- sha256 of the prompt text, hex
    prompt      TEXT,                   -- only when keep_prompts
    model       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    preset      TEXT NOT NULL,
    explored    INTEGER NOT NULL,
    overflow    INTEGER NOT NULL,
    candidates  TEXT NOT NULL,          -- JSON list of {model, score, eligible, reason, terms...}
    outcome     TEXT,                   -- ok | engine_failure | refused | cancelled, once the request finished
    latency_s   REAL,
    feedback    REAL,                   -- the client's score, if it sent one (at most once)
    client_request_id TEXT,             -- the client's x-request-id, as sent
    key_id      TEXT                    -- the API key that made the request (NULL in open mode)
);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts);
CREATE TABLE IF NOT EXISTS outcome_stats (
    category  TEXT NOT NULL,
    model     TEXT NOT NULL,
    successes REAL NOT NULL,
    failures  REAL NOT NULL,
    updated   REAL NOT NULL,
    PRIMARY KEY (category, model)
);
"""
ADDED_COLUMNS = {"client_request_id": "TEXT", "key_id": "TEXT"}  # columns stores made before 0.2 lack

# A request id is minted by the router and unique, so a second insert of one id is a bug, never a client's doing:
# OR IGNORE keeps the first row rather than letting anything overwrite an audit row.
_INSERT_DECISION = (
    "INSERT OR IGNORE INTO decisions (request_id, ts, category, complexity, prompt_hash, prompt, model, reason, "
    "preset, explored, overflow, candidates, client_request_id, key_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_OUTCOME = "UPDATE decisions SET outcome = ?, latency_s = ? WHERE request_id = ?"
_SET_FEEDBACK = "UPDATE decisions SET feedback = ? WHERE request_id = ? AND feedback IS NULL"
_SET_STATS = (
    "INSERT INTO outcome_stats (category, model, successes, failures, updated) VALUES (?,?,?,?,?) "
    "ON CONFLICT (category, model) DO UPDATE SET successes = excluded.successes, "
    "failures = excluded.failures, updated = excluded.updated"
)


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One committed routing decision, as the audit log keeps it."""

    request_id: str
    client_request_id: str | None
    key_id: str | None
    ts: float  # unix seconds
    category: str
    complexity: float
    prompt: str  # hashed in the writer thread; kept only with keep_prompts
    model: str
    reason: str
    preset: str
    explored: bool
    overflow: bool
    candidates: list[dict[str, Any]]


Item = tuple[str, Any]  # (kind, row): decision (a DecisionRow) | outcome | feedback | stats (tuples)


class StoreError(RuntimeError):
    """The store file cannot be opened or is not a Triage store."""


def _connect(path: str) -> sqlite3.Connection:
    try:
        return connect(path, SCHEMA, "decisions", ADDED_COLUMNS)  # a store made by an older Triage gains columns
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(
            f"cannot open the store {path}: {exc}; check the directory exists and is writable, or set policy.store"
        ) from None


class Store:
    """Open with `Store.open(path)`; `close()` flushes the queue and stops the writer."""

    def __init__(self, path: str, keep_prompts: bool = False, on_commit: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.keep_prompts = keep_prompts
        self._reader = _connect(path)
        self._writer: BatchWriter[Item] = BatchWriter(_connect(path), self._write, "store", on_commit)

    @property
    def committed(self) -> int:
        """Rows whose transaction has committed (a crash cannot lose these)."""
        return self._writer.committed

    @property
    def dropped(self) -> int:
        """Rows lost to a full queue."""
        return self._writer.dropped

    @classmethod
    def open(cls, path: str | Path, keep_prompts: bool = False) -> Store:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        return cls(str(path), keep_prompts)

    # -- writes (non-blocking) ------------------------------------------------------------------------

    def _put(self, kind: str, row: Any) -> None:
        self._writer.put((kind, row))

    def record_decision(self, row: DecisionRow) -> None:
        self._put("decision", row)

    def record_outcome(self, request_id: str, outcome: str, latency_s: float) -> None:
        self._put("outcome", (str(outcome), latency_s, request_id))

    def record_feedback(self, request_id: str, score: float) -> None:
        self._put("feedback", (score, request_id))

    def save_stats(self, category: str, model: str, successes: float, failures: float) -> None:
        self._put("stats", (category, model, successes, failures, time.time()))

    def _write(self, conn: sqlite3.Connection, batch: list[Item]) -> None:
        for kind, row in batch:
            if kind == "decision":
                conn.execute(_INSERT_DECISION, self._decision_row(row))
            elif kind == "outcome":
                conn.execute(_SET_OUTCOME, row)
            elif kind == "feedback":
                conn.execute(_SET_FEEDBACK, row)
            else:
                conn.execute(_SET_STATS, row)

    def _decision_row(self, row: DecisionRow) -> tuple[Any, ...]:
        digest = hashlib.sha256(row.prompt.encode("utf-8", "replace")).hexdigest()
        return (
            row.request_id,
            row.ts,
            row.category,
            row.complexity,
            digest,
            row.prompt if self.keep_prompts else None,
            row.model,
            row.reason,
            row.preset,
            int(row.explored),
            int(row.overflow),
            json.dumps(row.candidates, separators=(",", ":")),
            row.client_request_id,
            row.key_id,
        )

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every row queued so far is committed (tests, shutdown)."""
        self._writer.flush(timeout_s)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    # -- reads ------------------------------------------------------------------------------------------

    def load_stats(self) -> list[tuple[str, str, float, float]]:
        rows = self._reader.execute("SELECT category, model, successes, failures FROM outcome_stats")
        return [(str(c), str(m), float(s), float(f)) for c, m, s, f in rows]

    def lookup(self, request_id: str) -> tuple[str, str, str | None, bool] | None:
        """(category, model, key id, whether feedback was given) of a logged decision, or None."""
        row = self._reader.execute(
            "SELECT category, model, key_id, feedback IS NOT NULL FROM decisions WHERE request_id = ?", (request_id,)
        ).fetchone()
        return (str(row[0]), str(row[1]), row[2], bool(row[3])) if row else None

    def latest(self, limit: int = 20) -> list[dict[str, Any]]:
        cursor = self._reader.execute("SELECT * FROM decisions ORDER BY ts DESC LIMIT ?", (limit,))
        names = [d[0] for d in cursor.description]
        out = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            row["candidates"] = json.loads(row["candidates"])
            out.append(row)
        return out
