"""A stand-in for `vllm serve` in CI: the same argv, `/health`, `/v1/models`, `/metrics`, a tiny chat answer.

usage: fake_vllm.py serve MODEL --host H --port P [--served-model-name NAME] [any other vllm flag ...]

Environment, all optional:
  FAKE_VLLM_DIR               write <served-name>-<pid>.json there: argv, pid, child pid
  FAKE_VLLM_HEALTH_DELAY_S    /health answers 503 until this long after start
  FAKE_VLLM_CRASH_AFTER_S     exit with code 3 this long after start ...
  FAKE_VLLM_CRASH_TIMES       ... only in the first N starts of this served name (counted in FAKE_VLLM_DIR)
  FAKE_VLLM_EXIT_AT_ONCE      exit with this code right away, after printing an error (a bad start)
  FAKE_VLLM_CHILD=1           start a worker child in the same process group, as vLLM starts its EngineCore
  FAKE_VLLM_IGNORE_SIGTERM=1  ignore SIGTERM, so only SIGKILL ends it
Stdlib only, so it starts in a few tens of milliseconds. Every wait is bounded (at most 600 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LIFETIME_S = 600.0  # never outlive a test run


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="fake_vllm")
    parser.add_argument("subcommand", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--max-num-seqs", type=int)
    return parser.parse_known_args(argv)


def make_handler(served: str, ready_at_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet, like vLLM without --enable-log-requests

        def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self.send(200 if time.monotonic() >= ready_at_s else 503, b"")
            elif self.path == "/v1/models":
                self.send(200, json.dumps({"object": "list", "data": [{"id": served, "object": "model"}]}).encode())
            elif self.path == "/metrics":
                text = "".join(
                    f'vllm:{name}{{model_name="{served}"}} 0.0\n'
                    for name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc")
                )
                self.send(200, text.encode(), "text/plain")
            else:
                self.send(404, b'{"error": {"message": "not found"}}')

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            if self.path != "/v1/chat/completions":
                self.send(404, b'{"error": {"message": "not found"}}')
                return
            answer = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": served,
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fake answer"}}
                ],
            }
            if not body.get("stream"):
                self.send(200, json.dumps(answer).encode())
                return
            chunks = [
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "model": served,
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
                for word in ("fake", " answer")
            ]
            events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self.send(200, events.encode(), "text/event-stream")

    return Handler


def main() -> int:
    args, extra = parse(sys.argv[1:])
    served = args.served_model_name or args.model
    env = os.environ
    print(f"INFO fake vllm {os.getpid()}: serve {args.model} as {served} on {args.host}:{args.port}", flush=True)
    if "FAKE_VLLM_EXIT_AT_ONCE" in env:
        print("ERROR fake vllm: CUDA out of memory (pretend)", flush=True)
        return int(env["FAKE_VLLM_EXIT_AT_ONCE"])

    child = None
    if env.get("FAKE_VLLM_CHILD") == "1":
        child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({LIFETIME_S})"])
    starts = 0
    state = Path(env["FAKE_VLLM_DIR"]) if env.get("FAKE_VLLM_DIR") else None
    if state is not None:
        starts = len(list(state.glob(f"{served}-*.json")))
        record = {"argv": sys.argv[1:], "extra": extra, "pid": os.getpid(), "child": child and child.pid}
        (state / f"{served}-{os.getpid()}.json").write_text(json.dumps(record))

    stop = threading.Event()
    # SIGTERM may come more than once (PR_SET_PDEATHSIG fires as each thread of a dying parent exits), so it
    # only sets a flag: an exception raised by a second one would cut the clean-up below short.
    if env.get("FAKE_VLLM_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())

    started_s = time.monotonic()
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler(served, started_s + float(env.get("FAKE_VLLM_HEALTH_DELAY_S", 0)))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("Loading weights: 100%|##########| 4/4\rLoading weights: done", flush=True)
    print("INFO:     Application startup complete.", flush=True)
    crash_after_s = float(env.get("FAKE_VLLM_CRASH_AFTER_S", "inf"))
    if starts >= int(env.get("FAKE_VLLM_CRASH_TIMES", 1 << 30)):
        crash_after_s = float("inf")
    try:
        while time.monotonic() - started_s < min(crash_after_s, LIFETIME_S) and not stop.is_set():
            time.sleep(0.05)
        if not stop.is_set() and crash_after_s < LIFETIME_S:
            print("ERROR fake vllm: engine core died (pretend)", flush=True)
            os._exit(3)  # like a real crash: no cleanup, the child is left for the supervisor to kill
        return 0
    finally:
        server.shutdown()
        if child is not None:
            child.terminate()
            child.wait(5)


if __name__ == "__main__":
    sys.exit(main())
