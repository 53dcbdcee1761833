"""The key store: only hashes at rest, revoked keys left out of the active table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from server.auth.keys import KeyStore, hash_key


def test_active_table_skips_revoked(tmp_path: Path) -> None:
    store = KeyStore.open(str(tmp_path / "k.db"))
    key_a, _ = store.create("a", allow_remote=True)
    _, b = store.create("b")
    store.revoke(b.id)
    active = store.active_by_hash()
    assert set(active) == {hash_key(key_a)} and active[hash_key(key_a)].allow_remote
    store.close()


def test_admin_flag_and_a_store_made_before_it(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)  # the key table as Triage wrote it before the console existed
    old.executescript(
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, "
        "created REAL NOT NULL, revoked REAL, models TEXT, allow_remote INTEGER NOT NULL, rpm INTEGER, "
        "tpm INTEGER, daily_tokens INTEGER, daily_usd REAL);"
        "INSERT INTO api_keys VALUES ('key_old', 'old', 'abc', 1.0, NULL, NULL, 0, NULL, NULL, NULL, NULL);"
    )
    old.close()
    store = KeyStore.open(path)
    assert store.active_by_hash()["abc"].admin is False  # old keys stay valid, and are not admins
    _, ops = store.create("ops", admin=True)
    assert ops.admin and store.get(ops.id) == ops
    store.close()
