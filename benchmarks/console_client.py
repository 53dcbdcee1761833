"""One operator-console client, as a benchmark load: a separate process that holds Triage's console stream
(`GET /dashboard/api/stream`) open and reads every event, as the page does, so that a benchmark can measure what
an attached console costs the request path.

    python benchmarks/console_client.py --url http://127.0.0.1:8080 [--key KEY] [--max-s 3600]

It reads commands on stdin: `attach` (open the stream; answers `attached` once the first snapshot arrived),
`detach` (close it; answers `detached`) and `quit` (prints what it read as one JSON line). `ConsoleClient` drives
it from the benchmark, so a measurement can switch the console on and off many times without starting a process
each time. Reconnects when the server ends a stream (streams are bounded); bounded itself by `--max-s`. All
traffic goes to 127.0.0.1. Knows nothing about what is measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

READY_TIMEOUT_S = 30.0


class ConsoleClient:
    """`with ConsoleClient(url) as console:` the client process; `attach()` / `detach()` switch its stream."""

    def __init__(self, base_url: str, key: str | None = None, max_s: float = 3600.0) -> None:
        if urlsplit(base_url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"benchmarks only send traffic to loopback, not {base_url}")
        self.argv = [sys.executable, str(Path(__file__).resolve()), "--url", base_url, "--max-s", str(max_s)]
        if key:
            self.argv += ["--key", key]
        self.proc: subprocess.Popen[str] | None = None
        self.attached = False
        self.read: dict[str, Any] = {}  # what the client reported when it quit: events, bytes, streams, seconds

    def __enter__(self) -> ConsoleClient:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def _command(self, command: str, answer: str) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError("console client is not running; use it inside `with`")
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline().strip()
        if line != answer:
            raise RuntimeError(f"console client answered {line!r} to {command!r}")

    def attach(self) -> None:
        self._command("attach", "attached")
        self.attached = True

    def detach(self) -> None:
        self._command("detach", "detached")
        self.attached = False

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        out, _ = proc.communicate("quit\n", timeout=15)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.read = json.loads(lines[-1]) if lines else {}


class Reader:
    """The stream, read in a thread while attached."""

    def __init__(self, url: str, key: str | None, max_s: float) -> None:
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        self.url = url
        self.deadline_s = time.monotonic() + max_s
        self.counts = {"events": 0, "bytes": 0, "streams": 0}
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread: threading.Thread | None = None

    def attach(self) -> bool:
        self.stop.clear()
        self.ready.clear()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self.ready.wait(READY_TIMEOUT_S)

    def detach(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(READY_TIMEOUT_S)  # the stream sends every 0.5 s, so the reader notices soon
            self.thread = None

    def _read(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() < self.deadline_s:
                self.counts["streams"] += 1
                with client.stream("GET", "/dashboard/api/stream") as response:
                    response.raise_for_status()
                    for line in response.iter_lines():
                        self.counts["bytes"] += len(line) + 1
                        if line.startswith("event:"):
                            self.counts["events"] += 1
                            self.ready.set()
                        if self.stop.is_set() or time.monotonic() >= self.deadline_s:
                            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Triage's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--key", help="an admin API key (keys mode)")
    parser.add_argument("--max-s", type=float, default=3600.0, help="stop reading after this long at most")
    args = parser.parse_args(argv)
    reader = Reader(args.url, args.key, args.max_s)
    t0 = time.monotonic()
    for line in sys.stdin:
        command = line.strip()
        if command == "attach":
            print("attached" if reader.attach() else "no snapshot arrived", flush=True)
        elif command == "detach":
            reader.detach()
            print("detached", flush=True)
        elif command == "quit":
            break
    reader.detach()
    print(json.dumps({**reader.counts, "seconds": round(time.monotonic() - t0, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
