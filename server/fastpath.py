"""The outermost ASGI app: the two generation routes go straight to the gateway, everything else to FastAPI.

Profiling the router in front of a zero-latency engine showed FastAPI's middleware stack and dependency
machinery taking about half of the router's CPU per request, more than the gateway itself. The generation
routes are the hot path, so they are served here on raw ASGI: same `Gateway`, same typed errors, same body
limit, same headers. FastAPI still declares them (OpenAPI) and serves every other route. This module knows
nothing about routing decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from .errors import TriageError, error_body
from .routes import collect_body, new_request_id, wait_for_disconnect
from .serving import Endpoint, Gateway

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HOT_ROUTES: dict[str, Endpoint] = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
_JSON = [(b"content-type", b"application/json")]
_SSE = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class HotPathApp:
    """Wraps the FastAPI app; attribute access (state, openapi, ...) falls through to it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = HOT_ROUTES.get(scope["path"])
            if endpoint is not None:
                await self._generate(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _generate(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        received_s = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = new_request_id(_text(headers.get(b"x-request-id")))
        gateway: Gateway = self.app.state.gateway
        try:
            tenant = gateway.guard.tenancy.authenticate(_text(headers.get(b"authorization")))
            raw = await collect_body(
                _body_chunks(receive), _text(headers.get(b"content-length")), gateway.config.server.max_body_bytes
            )
            reply = await gateway.generate(
                endpoint, raw, received_s, request_id, functools.partial(wait_for_disconnect, receive), tenant
            )
        except TriageError as exc:
            gateway.metrics.errors.labels(exc.type).inc()
            await _send_error(send, exc.status, exc.body(), {"x-triage-request-id": request_id, **exc.headers})
            return
        except Exception as exc:  # never a bare 500: an OpenAI-shaped error, and the traceback in the log
            log.exception("unexpected error on POST %s", scope["path"])
            await _send_error(
                send,
                500,
                error_body(
                    f"internal error in the router ({type(exc).__name__}); this is a bug, please report it",
                    "internal_error",
                ),
                {"x-triage-request-id": request_id},
            )
            return
        if reply.stream is None:
            await send({"type": "http.response.start", "status": 200, "headers": _JSON + _encode(reply.headers)})
            await send({"type": "http.response.body", "body": reply.body or b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE + _encode(reply.headers)})
        try:
            await _stream_until_disconnect(reply.stream, receive, send)
        finally:
            if reply.abandon is not None:
                reply.abandon()


async def _stream_until_disconnect(events: AsyncIterator[bytes], receive: Receive, send: Send) -> None:
    """Relay SSE bytes; if the client leaves, stop at once (closing the stream cancels the engine's work)."""
    pump = asyncio.ensure_future(_pump(events, send))
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watcher):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if hasattr(events, "aclose"):
            await events.aclose()
    if pump.done() and not pump.cancelled() and pump.exception() is not None:
        log.warning("stream relay failed: %r", pump.exception())


async def _pump(events: AsyncIterator[bytes], send: Send) -> None:
    async for chunk in events:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _send_error(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON + _encode(headers)})
    await send({"type": "http.response.body", "body": body})


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
