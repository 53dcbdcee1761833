"""The Responses store: conversations read back through their parents, per key, with expiry and a size cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.protocols.response_store import ResponseStore


@pytest.fixture
def store(tmp_path: Path) -> ResponseStore:
    return ResponseStore(str(tmp_path / "responses.db"), ttl_s=3600, max_bytes=1 << 20)


async def test_a_conversation_is_its_chain_of_responses_oldest_first(store: ResponseStore) -> None:
    await store.save("resp_1", "k1", None, [{"n": 1}, {"n": 2}])
    await store.save("resp_2", "k1", "resp_1", [{"n": 3}])
    await store.save("resp_3", "k1", "resp_2", [{"n": 4}, {"n": 5}])
    assert await store.conversation("resp_3", "k1") == [{"n": i} for i in range(1, 6)]
    assert await store.conversation("resp_2", "k1") == [{"n": 1}, {"n": 2}, {"n": 3}]
    store.close()


async def test_only_the_key_that_stored_it_reads_it(store: ResponseStore) -> None:
    await store.save("resp_a", "k1", None, [{"n": 1}])
    await store.save("resp_open", None, None, [{"n": 2}])
    assert await store.conversation("resp_a", "k2") is None
    assert await store.conversation("resp_a", None) is None
    assert await store.conversation("resp_open", None) == [{"n": 2}]
    assert await store.conversation("resp_open", "k1") is None
    assert await store.conversation("resp_unknown", "k1") is None
    store.close()


async def test_expired_responses_are_gone(tmp_path: Path) -> None:
    store = ResponseStore(":memory:", ttl_s=1e-6, max_bytes=1 << 20)
    await store.save("resp_1", None, None, [{"n": 1}])
    assert await store.conversation("resp_1", None) is None
    store.close()


async def test_over_the_cap_the_oldest_go_and_their_conversations_end(tmp_path: Path) -> None:
    store = ResponseStore(":memory:", ttl_s=3600, max_bytes=1000)
    item = {"text": "x" * 100}  # about 113 bytes of JSON per response
    await store.save("resp_0", None, None, [item])
    for n in range(1, 20):
        await store.save(f"resp_{n}", None, f"resp_{n - 1}", [item])
    assert await store.conversation("resp_19", None) is None  # its first response was evicted: the chain is broken
    rows = store._db.execute("SELECT COUNT(*), SUM(size) FROM responses").fetchone()
    assert rows[0] < 20 and rows[1] <= 1000
    await store.save("resp_new", None, None, [item])
    assert await store.conversation("resp_new", None) == [item]
    store.close()


async def test_it_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "responses.db")
    first = ResponseStore(path, ttl_s=3600, max_bytes=1 << 20)
    await first.save("resp_1", "k", None, [{"n": 1}])
    first.close()
    second = ResponseStore(path, ttl_s=3600, max_bytes=1 << 20)
    assert await second.conversation("resp_1", "k") == [{"n": 1}]
    second.close()
