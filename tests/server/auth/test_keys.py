"""The key store: only hashes at rest, revoked keys left out of the active table."""

from __future__ import annotations

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
