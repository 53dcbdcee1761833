"""`triage sim-engine`: runs engines from flags for a while, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from server.cli.sim_engine import main
from tests.server.conftest import free_port

REPO = Path(__file__).resolve().parents[3]


def test_main_runs_for_a_while() -> None:
    port = free_port()
    assert main(["--name", "m", "--port", str(port), "--shape", "tiny-fast", "--run-for-s", "0.2"]) == 0
    assert main(["--name", "m"]) == 2  # no port


def test_cli_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli",
            "sim-engine",
            "--name",
            "m",
            "--port",
            str(port),
            "--shape",
            "tiny-fast",
            "--run-for-s",
            "20",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once every engine listens
        assert f"127.0.0.1:{port}/v1" in line
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "hi", "max_tokens": 2})
        assert r.status_code == 200
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.perf_counter() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
