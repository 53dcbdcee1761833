"""An OpenAI-compatible engine on a real socket whose answers the test scripts: text, tool calls, a finish reason,
usage, an error part way through a stream, or an error status; it records every request it gets (path and JSON body).

Streams are sent the way vLLM sends them: a role chunk, text in small pieces, each tool call as a chunk with its
id and name followed by its arguments in pieces, a finish chunk, a usage chunk when `stream_options.include_usage`,
then `[DONE]`. `/v1/responses` and `/v1/messages` answer with canned native bodies (for engines that declare
`native_apis`). Stdlib only; serves from a thread; every wait is bounded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PIECE_CHARS = 4  # characters per streamed text or argument piece


@dataclass
class Reply:
    text: str = "Hello from the scripted engine."
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments as JSON text)
    finish_reason: str | None = None  # default: tool_calls when there are calls, else stop
    stop_reason: str | None = None  # vLLM's: the stop string that ended the answer
    prompt_tokens: int = 11
    completion_tokens: int = 7
    break_after_chunks: int | None = None  # stream an error event after this many content chunks
    status: int = 200  # any other: every POST is answered with this status and an OpenAI error body


@dataclass
class ScriptedEngine:
    url: str
    requests: list[tuple[str, dict[str, Any]]]
    reply: Reply

    def last(self, path: str = "/v1/chat/completions") -> dict[str, Any]:
        return next(body for p, body in reversed(self.requests) if p == path)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, "choices": [choice]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _pieces(text: str) -> list[str]:
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]


def chat_answer(model: str, reply: Reply) -> dict[str, Any]:
    calls = [
        {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": args}}
        for n, (name, args) in enumerate(reply.tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if calls:
        message["tool_calls"] = calls
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    choice = {"index": 0, "message": message, "finish_reason": finish, "stop_reason": reply.stop_reason}
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": model, "choices": [choice], "usage": usage}


def chat_stream(model: str, reply: Reply, include_usage: bool) -> Iterator[bytes]:
    yield _chunk(model, {"role": "assistant", "content": ""})
    for sent, piece in enumerate(_pieces(reply.text)):
        if reply.break_after_chunks is not None and sent >= reply.break_after_chunks:
            error = {"message": "engine fell over", "type": "engine_unavailable", "param": None, "code": None}
            yield b"data: " + json.dumps({"error": error}).encode() + b"\n\ndata: [DONE]\n\n"
            return
        yield _chunk(model, {"content": piece})
    for n, (name, args) in enumerate(reply.tool_calls):
        first = {"index": n, "id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": ""}}
        yield _chunk(model, {"tool_calls": [first]})
        for piece in _pieces(args):
            yield _chunk(model, {"tool_calls": [{"index": n, "function": {"arguments": piece}}]})
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    yield _chunk(model, {}, finish, stop_reason=reply.stop_reason)
    if include_usage:
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage}
        yield b"data: " + json.dumps(data).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


NATIVE_RESPONSE = {
    "id": "resp_native1",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": "native",
    "output": [
        {
            "id": "msg_n",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "native answer", "annotations": []}],
        }
    ],
    "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
}
NATIVE_MESSAGE = {
    "id": "msg_native1",
    "type": "message",
    "role": "assistant",
    "model": "native",
    "content": [{"type": "text", "text": "native answer"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 2},
}


def _native_stream(path: str) -> Iterator[bytes]:
    if path.endswith("/responses"):
        events = [
            ("response.created", {"response": {**NATIVE_RESPONSE, "status": "in_progress", "output": []}}),
            ("response.output_text.delta", {"item_id": "msg_n", "output_index": 0, "content_index": 0, "delta": "x"}),
            ("response.completed", {"response": NATIVE_RESPONSE}),
        ]
        for n, (kind, data) in enumerate(events):
            yield f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': n, **data})}\n\n".encode()
        return
    start = {"type": "message_start", "message": {**NATIVE_MESSAGE, "content": []}}
    yield f"event: message_start\ndata: {json.dumps(start)}\n\n".encode()
    yield b'event: message_stop\ndata: {"type": "message_stop"}\n\n'


@contextmanager
def scripted_engine(served: str = "scripted") -> Iterator[ScriptedEngine]:
    requests: list[tuple[str, dict[str, Any]]] = []
    reply = Reply()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # streams end when the connection closes

        def log_message(self, format: str, *args: object) -> None:
            pass

        def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path in ("/health", "/v1/models"):
                self.send(200, json.dumps({"object": "list", "data": [{"id": served}]}).encode())
            else:
                self.send(404, b"{}")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            requests.append((self.path, body))
            if reply.status != 200:
                self.send(
                    reply.status, json.dumps({"error": {"message": "scripted failure", "type": "api_error"}}).encode()
                )
                return
            stream = bool(body.get("stream"))
            if self.path == "/v1/chat/completions" and not stream:
                self.send(200, json.dumps(chat_answer(served, reply)).encode())
                return
            if not stream:
                native = NATIVE_RESPONSE if self.path.endswith("/responses") else NATIVE_MESSAGE
                self.send(200, json.dumps(native).encode())
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            if self.path == "/v1/chat/completions":
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                chunks = chat_stream(served, reply, include_usage)
            else:
                chunks = _native_stream(self.path)
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ScriptedEngine(f"http://127.0.0.1:{server.server_address[1]}/v1", requests, reply)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
