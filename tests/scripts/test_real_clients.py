"""scripts/real_clients.py end to end: the real Codex CLI and Claude Code, installed from npm, each run one task
against the demo through Triage (Responses API and Messages API). Skipped, with the reason, where npm or its
registry cannot be reached; a failed install or a failed client is a failure.

The CLIs go to $TRIAGE_REAL_CLIENTS_PREFIX (default ~/.cache/triage/real-clients) and are reused from there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _registry_reachable() -> str | None:
    """None when npm can reach its registry; else why not."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed (the real CLIs are npm packages)"
    try:
        done = subprocess.run([npm, "view", "@openai/codex", "version"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "the npm registry did not answer within 60 s"
    if done.returncode != 0:
        return f"the npm registry is unreachable: {done.stderr.strip()[-300:]}"
    return None


@pytest.mark.slow
def test_codex_and_claude_code_complete_a_task_through_triage(tmp_path: Path) -> None:
    unreachable = _registry_reachable()
    if unreachable:
        pytest.skip(unreachable)
    prefix = os.environ.get("TRIAGE_REAL_CLIENTS_PREFIX", str(Path.home() / ".cache/triage/real-clients"))
    out = tmp_path / "real_clients.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts/real_clients.py"), "--prefix", prefix, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [c["client"] for c in result["clients"]] == ["codex", "claude"]
    for client in result["clients"]:
        assert client["exit_status"] == 0 and client["answer_seen"] and client["ok_requests_on_route"] >= 1, client
