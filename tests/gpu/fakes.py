"""A fake `vllm serve` process (tests/server/fake_vllm.py) for the GPU benchmarks' CPU-side tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from server.supervisor import free_port

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def fake_vllm(served_name: str) -> Iterator[str]:
    """Start the fake engine serving `served_name`; yields its base URL once /health answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "server" / "fake_vllm.py"),
            "serve",
            "m",
            "--port",
            str(port),
            "--served-model-name",
            served_name,
        ],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline_s = time.monotonic() + 20
    while time.monotonic() < deadline_s:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(10)
