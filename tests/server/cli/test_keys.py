"""`triage keys`: create/list/revoke through the command, only hashes at rest, exit 2 for a bad store path."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from server.auth.keys import hash_key
from server.cli import main as triage_main
from server.cli.keys import main


def test_create_list_revoke_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "triage.db")
    assert (
        triage_main(
            ["keys", "--db", db, "create", "team-a", "--models", "chat,fast", "--rpm", "60", "--daily-tokens", "1000"]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("tri-") and created["id"].startswith("key_")
    assert main(["--db", db, "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["id"] == created["id"] and listed["models"] == ["chat", "fast"] and listed["rpm"] == 60
    assert "key" not in listed
    raw = sqlite3.connect(db).execute("SELECT * FROM api_keys").fetchall()
    assert created["key"] not in repr(raw) and hash_key(created["key"]) in repr(raw)  # only the hash at rest
    assert main(["--db", db, "revoke", created["id"]]) == 0
    assert main(["--db", db, "list"]) == 0 and capsys.readouterr().out == ""
    assert main(["--db", db, "revoke", created["id"]]) == 1


def test_admin_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "triage.db")
    assert main(["--db", db, "create", "ops", "--admin"]) == 0
    assert json.loads(capsys.readouterr().out)["admin"] is True
    assert main(["--db", db, "create", "team"]) == 0
    assert json.loads(capsys.readouterr().out)["admin"] is False
    assert main(["--db", db, "list"]) == 0
    assert [json.loads(line)["admin"] for line in capsys.readouterr().out.splitlines()] == [True, False]


def test_unwritable_store_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--db", str(blocker / "sub" / "triage.db"), "list"]) == 2
    assert "cannot open the key store" in capsys.readouterr().err
