"""The ring the request path feeds: bounded, finished in place, lookups follow evictions, and it keeps
references rather than copies (nothing serialised at commit)."""

from __future__ import annotations

from server.classify import Classification
from server.console.recent import RecentDecisions
from server.console.views import decision_detail, decision_summary
from server.policy import Candidate, Decision
from server.relay import Plan

from ..conftest import demo_like_config

MODELS = {m.name: m for m in demo_like_config().models}


def plan(model: str = "coder", category: str = "code") -> Plan:
    candidates = [
        Candidate("coder", True, "meets target", 0.5, {"quality": 0.8}),
        Candidate("fast", False, "unhealthy"),
    ]
    decision = Decision(model, f"{category}: {model}", candidates, fallbacks=["chat"], preset="balanced")
    return Plan(MODELS[model], decision.reason, Classification(category, {category: 1.0}, 0.3), decision=decision)


def test_ring_is_bounded_and_its_index_follows_evictions() -> None:
    ring = RecentDecisions(capacity=3)
    entries = [ring.add(f"r{i}", "chat", False, plan()) for i in range(5)]
    assert [e.request_id for e in ring.entries] == ["r2", "r3", "r4"]
    assert set(ring.by_id) == {"r2", "r3", "r4"}
    assert entries[-1].seq == 5 and entries[-1].outcome == "" and entries[-1].model == ""


def test_finish_and_feedback_change_the_entry_in_place_and_bump_its_version() -> None:
    ring = RecentDecisions()
    p = plan()
    entry = ring.add("r1", "chat", True, p, key_id="key_1")
    assert entry.decision is p.decision  # a reference: the candidates are serialised only when asked
    seen = ring.version
    assert ring.changed_since(seen, 10) == []
    ring.finish(entry, "ok", "chat", 0.05, 0.4)
    assert ring.changed_since(seen, 10) == [entry]
    assert ring.drain_closed()[0][1:] == ("chat", "code", False, "ok", 0.05)
    assert ring.drain_closed() == [] and ring.closed_total == 1
    ring.feedback("r1", 1.0)
    ring.feedback("unknown", 0.0)  # not in the ring: ignored
    summary = decision_summary(entry)
    assert (summary["status"], summary["model"], summary["planned"], summary["feedback"]) == (
        "ok",
        "chat",
        "coder",
        1.0,
    )
    assert (summary["ttft_ms"], summary["latency_ms"]) == (50.0, 400.0)
    detail = decision_detail(entry)
    assert [c["model"] for c in detail["candidates"]] == ["coder", "fast"] and detail["key_id"] == "key_1"
    assert detail["candidates"][1]["reason"] == "unhealthy"


def test_changed_since_is_newest_first_and_limited() -> None:
    ring = RecentDecisions()
    for i in range(10):
        ring.add(f"r{i}", "completions", False, plan())
    assert [e.request_id for e in ring.changed_since(0, 3)] == ["r9", "r8", "r7"]
    assert decision_summary(ring.entries[0])["status"] == "in flight"
