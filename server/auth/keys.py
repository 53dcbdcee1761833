"""API keys at rest: the `api_keys` table in the SQLite store (`triage keys` in server/cli/ manages them).

Only a SHA-256 hash of each key is stored (keys are 256-bit random, so a fast hash is enough; the clear key is
printed once, at creation). Each key carries its tenant's limits: allowed models, whether remote providers may
be used, requests and tokens per minute, and a daily budget (tokens for local models, dollars for remote); an
admin key may also open the operator console. The table is created if missing, beside whatever else lives in the
file (the policy's decision log), and a table made by an older Triage gains the columns it lacks.
Knows nothing about HTTP or how limits are enforced (`tenancy.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ..sqlite_writer import connect as sqlite_connect

log = logging.getLogger(__name__)
KEY_PREFIX = "tri-"
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,       -- public id, e.g. key_3f9a1c2b (safe to log)
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,   -- sha256 of the full key, hex
    created      REAL NOT NULL,          -- unix seconds
    revoked      REAL,                   -- unix seconds, NULL while valid
    models       TEXT,                   -- JSON list of allowed model names; NULL: all
    allow_remote INTEGER NOT NULL,
    rpm          INTEGER,                -- requests per minute; NULL: unlimited
    tpm          INTEGER,                -- tokens per minute (prompt + requested output)
    daily_tokens INTEGER,                -- local tokens per UTC day
    daily_usd    REAL,                   -- remote spend per UTC day, dollars
    admin        INTEGER NOT NULL DEFAULT 0  -- 1: may open the operator console (/dashboard)
);
"""
ADDED_COLUMNS = {"admin": "INTEGER NOT NULL DEFAULT 0"}  # columns key tables made before the console lack


class KeyStoreError(RuntimeError):
    """The key store cannot be opened or written; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    created: float
    revoked: float | None
    models: frozenset[str] | None
    allow_remote: bool
    rpm: int | None
    tpm: int | None
    daily_tokens: int | None
    daily_usd: float | None
    admin: bool = False  # may open the operator console


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def connect(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with the keys table present and current (same pragmas as the policy store); keys
    made by an older Triage stay valid and are not admins."""
    try:
        return sqlite_connect(path, SCHEMA, "api_keys", ADDED_COLUMNS)
    except (sqlite3.Error, OSError) as exc:
        raise KeyStoreError(
            f"cannot open the key store {path}: {exc}; check the directory is writable or set auth.db"
        ) from None


_COLUMNS = "id, name, created, revoked, models, allow_remote, rpm, tpm, daily_tokens, daily_usd, admin"


def _record(row: tuple[Any, ...]) -> KeyRecord:
    kid, name, created, revoked, models, allow_remote, rpm, tpm, daily_tokens, daily_usd, admin = row
    return KeyRecord(
        str(kid),
        str(name),
        float(created),
        None if revoked is None else float(revoked),
        None if models is None else frozenset(json.loads(models)),
        bool(allow_remote),
        rpm,
        tpm,
        daily_tokens,
        daily_usd,
        bool(admin),
    )


class KeyStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: str) -> KeyStore:
        return cls(connect(path))

    def close(self) -> None:
        self.conn.close()

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        allow_remote: bool = False,
        rpm: int | None = None,
        tpm: int | None = None,
        daily_tokens: int | None = None,
        daily_usd: float | None = None,
        admin: bool = False,
    ) -> tuple[str, KeyRecord]:
        """A new key: (the clear key, shown once, and its record)."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        kid = "key_" + secrets.token_hex(4)
        self.conn.execute(
            f"INSERT INTO api_keys ({_COLUMNS}, key_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                kid,
                name,
                time.time(),
                None,
                None if models is None else json.dumps(sorted(models)),
                int(allow_remote),
                rpm,
                tpm,
                daily_tokens,
                daily_usd,
                int(admin),
                hash_key(key),
            ),
        )
        record = self.get(kid)
        if record is None:
            raise KeyStoreError(f"key {kid} vanished right after it was written")
        return key, record

    def get(self, kid: str) -> KeyRecord | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (kid,)).fetchone()
        return None if row is None else _record(row)

    def list(self, include_revoked: bool = False) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked IS NULL"
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY created").fetchall()
        return [_record(r) for r in rows]

    def active_by_hash(self) -> dict[str, KeyRecord]:
        """hash -> record of every key that is not revoked (what the server checks against)."""
        rows = self.conn.execute(f"SELECT key_hash, {_COLUMNS} FROM api_keys WHERE revoked IS NULL").fetchall()
        return {str(r[0]): _record(r[1:]) for r in rows}

    def revoke(self, kid: str) -> bool:
        cursor = self.conn.execute(
            "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), kid)
        )
        return cursor.rowcount > 0
