"""The SQLite store behind the policy: audit rows, outcomes, and feedback statistics that survive a restart."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from server.load import LoadBoard
from server.policy import Outcome
from server.store import Store
from tests.server.policy.policykit import commit, policy, request


def test_store_is_wal_and_decisions_are_audited_with_a_prompt_hash(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "triage.db")
    p = policy(load=LoadBoard())
    p.attach_store(store)
    r = request("code", rid="req-1")
    r.prompt_text = "write a sorting function"
    decision = commit(p, r)
    p.observe("req-1", decision.model, Outcome.OK, 0.25)
    store.flush()
    (row,) = store.latest(5)
    assert row["request_id"] == "req-1" and row["model"] == decision.model == "coder"
    assert row["prompt_hash"] == hashlib.sha256(b"write a sorting function").hexdigest()
    assert row["prompt"] is None
    assert row["category"] == "code" and row["reason"] == decision.reason and row["preset"] == "balanced"
    assert {c["model"] for c in row["candidates"]} == {"coder", "chat", "fast"}
    assert row["outcome"] == "ok" and row["latency_s"] == 0.25
    store.close()
    mode = sqlite3.connect(tmp_path / "triage.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_prompt_text_is_kept_only_when_configured(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db", keep_prompts=True)
    p = policy()
    p.attach_store(store)
    r = request("code", rid="x")
    r.prompt_text = "hello"
    commit(p, r)
    store.flush()
    assert store.latest(1)[0]["prompt"] == "hello"
    store.close()


def test_feedback_round_trip_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "triage.db"
    store = Store.open(path)
    first = policy()
    first.attach_store(store)
    for i in range(30):
        commit(first, request("code", rid=f"a{i}", models=["coder"]))
        assert first.feedback(f"a{i}", 0.0)  # the coder keeps answering code badly
    assert first.choose(request("code", rid="after")).model == "chat"  # outcomes moved its quality
    commit(first, request("code", rid="late"))
    assert not first.feedback("never-seen", 1.0)
    store.close()

    reopened = Store.open(path)
    second = policy()
    second.attach_store(reopened)
    assert second.stats.counts[("code", "coder")] == [0.0, 30.0]
    assert second.choose(request("code", rid="b")).model == "chat"  # learned, not re-learned
    assert second.feedback("late", 1.0)  # a decision from before the restart, found in the audit log
    assert not second.feedback("late", 0.0)  # once per request
    reopened.flush()
    rows = {r["request_id"]: r for r in reopened.latest(100)}
    assert rows["late"]["feedback"] == 1.0
    reopened.close()


def test_only_engine_failures_count_as_implicit_failures(tmp_path: Path) -> None:
    p = policy(options={"implicit_weight": 0.5})
    commit(p, request("code", rid="e1"))
    p.observe("e1", "coder", Outcome.ENGINE_FAILURE, 30.0)
    p.observe("e1", "coder", Outcome.OK, 1.0)  # success adds nothing: a served answer is not a good answer
    p.observe("e1", "coder", Outcome.REFUSED, 0.1)  # an engine 4xx is the request's fault
    p.observe("e1", "coder", Outcome.CANCELLED, 0.1)  # the client left
    assert p.stats.counts[("code", "coder")] == [0.0, 0.5]


def test_feedback_only_from_the_key_that_made_the_request(tmp_path: Path) -> None:
    p = policy()
    r = request("code", rid="k1")
    r.key_id = "key-a"
    commit(p, r)
    assert not p.feedback("k1", 0.0, key_id="key-b")
    assert not p.feedback("k1", 0.0)  # open-mode caller
    assert p.feedback("k1", 0.0, key_id="key-a")
    assert not p.feedback("k1", 0.0, key_id="key-a")  # once
    assert p.stats.counts[("code", "coder")] == [0.0, 1.0]


def test_an_older_store_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE decisions (request_id TEXT PRIMARY KEY, ts REAL NOT NULL, category TEXT NOT NULL, "
        "complexity REAL NOT NULL, prompt_hash TEXT NOT NULL, prompt TEXT, model TEXT NOT NULL, reason TEXT NOT NULL, "
        "preset TEXT NOT NULL, explored INTEGER NOT NULL, overflow INTEGER NOT NULL, candidates TEXT NOT NULL, "
        "outcome TEXT, latency_s REAL, feedback REAL);"
    )
    conn.close()
    store = Store.open(path)
    p = policy()
    p.attach_store(store)
    commit(p, request("code", rid="new"))
    store.flush()
    assert store.latest(1)[0]["client_request_id"] is None
    store.close()


def test_full_queue_drops_rows_instead_of_blocking(tmp_path: Path) -> None:
    import server.sqlite_writer as writer_module

    store = Store.open(tmp_path / "q.db")
    store._writer._queue.maxsize = 1
    for i in range(200):
        store.record_outcome(f"r{i}", Outcome.OK, 0.1)
    store.flush()
    assert store.dropped > 0
    assert store.committed + store.dropped == 200
    store.close()
    assert writer_module.QUEUE_MAX > 1000
