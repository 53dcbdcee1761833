"""Graceful shutdown: draining refuses new requests with 503, ends long streams with an error event at the
deadline, lets short requests finish; SIGTERM on a real `triage serve` process drains and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import yaml

from server.config import parse_config

from .conftest import free_port, run_triage, sim_model


def test_drain_refuses_new_and_ends_long_streams_cleanly() -> None:
    config = parse_config(
        {"models": [sim_model("chat", ["chat"], free_port(), time_scale=1.0)], "server": {"drain_s": 0.5}}
    )
    body = {
        "model": "chat",
        "stream": True,
        "max_tokens": 4000,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "go"}],
    }
    with run_triage(config) as triage:
        drain = triage.gateway.guard.drain
        with httpx.stream("POST", triage.base_url + "/v1/chat/completions", json=body, timeout=10) as r:
            chunks = r.iter_raw()
            first = next(chunks)
            triage.loop.call_soon_threadsafe(drain.begin)
            time.sleep(0.05)
            refused = httpx.post(
                triage.base_url + "/v1/chat/completions", timeout=5, json={**body, "stream": False, "max_tokens": 2}
            )
            rest = b"".join(chunks)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        events = [e.removeprefix(b"data: ") for e in (first + rest).split(b"\n\n") if e.startswith(b"data: ")]
        assert events[-1] == b"[DONE]"
        assert orjson.loads(events[-2])["error"]["code"] == "shutting_down"
        assert triage.gateway.guard.admission.in_flight == 0


def test_sigterm_drains_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    config = {"server": {"port": port, "drain_s": 3}, "models": [sim_model("chat", ["chat"], free_port())]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--config", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        body = {"model": "chat", "stream": True, "max_tokens": 30, "messages": [{"role": "user", "content": "go"}]}
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=10) as r:
            chunks = r.iter_raw()
            first = next(chunks)
            proc.send_signal(signal.SIGTERM)
            rest = b"".join(chunks)
        assert (first + rest).rstrip().endswith(b"data: [DONE]")  # the open stream finished
        assert proc.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
        assert proc.stderr is not None and b"draining open requests" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
