"""A zero-latency OpenAI-compatible engine: answers at once with canned bytes, so that what a router in front
of it adds is all that a benchmark measures. Not a simulator (see server/sim for that): no batching, no queue.

    python benchmarks/fake_engine.py --port 18101 [--chunks 16]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
import uvicorn

Scope = dict[str, Any]


def _chat_chunk(model: str, text: str, finish: str | None) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}],
            }
        )
        + b"\n\n"
    )


def _chat_body(model: str, chunks: int) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " tok" * chunks},
                    "logprobs": None,
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks},
        }
    )


class FakeEngine:
    """Raw ASGI app; every answer is prebuilt per model name, so the engine costs microseconds."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self._cache: dict[str, tuple[bytes, list[bytes]]] = {}

    def _answers(self, model: str) -> tuple[bytes, list[bytes]]:
        if model not in self._cache:
            events = [_chat_chunk(model, " tok", None) for _ in range(self.chunks - 1)]
            events.append(_chat_chunk(model, " tok", "length"))
            events.append(b"data: [DONE]\n\n")
            self._cache[model] = (_chat_body(model, self.chunks), events)
        return self._cache[model]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if scope["method"] == "GET":
            body = b"" if path == "/health" else b"vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(raw)
        whole, events = self._answers(str(request.get("model", "fake")))
        if not request.get("stream"):
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": whole})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for event in events:  # one write per event, as an engine streaming tokens does
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16, help="streamed events per answer")
    args = parser.parse_args()
    uvicorn.run(
        FakeEngine(args.chunks),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
