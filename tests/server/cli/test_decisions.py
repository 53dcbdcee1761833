"""`triage decisions`: the latest decisions from the audit log, newest first; exit 2 without a store."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import decisions
from server.store import Store
from tests.server.policy.policykit import commit, policy, request


def test_decisions_lists_the_latest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path / "t.db")
    p = policy()
    p.attach_store(store)
    commit(p, request("code", rid="req-a"))
    commit(p, request("creative_writing", rid="req-b"))
    store.close()
    assert decisions.main(["--db", str(tmp_path / "t.db"), "--limit", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "req-b" in out[0] and "chat" in out[0] and "req-a" in out[1]
    assert decisions.main(["--db", str(tmp_path / "missing.db")]) == 2
