"""The one front door: every HTTP request enters here, through the same middleware stack.

Routes that generate (`protocols.ROUTE_ADAPTERS`: chat completions, completions, the Responses API, Anthropic's
Messages API) are served by `FrontDoor._generate` on raw ASGI — one implementation: authenticate (`Authorization`
or `x-api-key`), read the body (bounded), hand a `Relay` to the gateway, send its answer, and close the relay in
one `finally`, whatever happened. Profiling showed FastAPI's routing and dependency machinery costing about half
of the router's CPU per request, so the hot path skips it; FastAPI still declares these routes in the OpenAPI
schema and serves every other route. Errors on every route go through `errors.http_error`, the one mapping, in
the route's protocol's shape. Middleware (`TriageApp`) wraps the front door, so it applies to the hot routes too.
Knows nothing about routing decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware

from .errors import Dialect, InvalidRequest, MethodNotAllowed, RequestTooLarge, TriageError, http_error
from .protocols import ROUTE_ADAPTERS, Adapter
from .relay import RequestIds
from .serving import Gateway

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class TriageApp:
    """The ASGI app uvicorn runs: `middleware` (outermost first) around the `FrontDoor`."""

    def __init__(self, app: FastAPI, middleware: Sequence[Middleware] = ()) -> None:
        self.fastapi = app
        self.state = app.state  # the gateway lives here once the lifespan has run
        stack: ASGIApp = FrontDoor(app)
        for entry in reversed(middleware):
            cls, args, kwargs = entry
            stack = cls(stack, *args, **kwargs)
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._stack(scope, receive, send)


class FrontDoor:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            adapter = ROUTE_ADAPTERS.get(scope["path"])
            if adapter is not None:
                if scope["method"] == "POST":
                    await self._generate(adapter, scope, receive, send)
                else:
                    exc = MethodNotAllowed(f"method {scope['method']} is not allowed on {scope['path']}; use POST")
                    await send_error(send, exc, {"allow": "POST"}, scope, adapter.dialect)
                return
        await self.app(scope, receive, send)

    async def _generate(self, adapter: Adapter, scope: Scope, receive: Receive, send: Send) -> None:
        received_s = time.perf_counter()
        headers = dict(scope["headers"])
        ids = RequestIds.mint(_text(headers.get(b"x-request-id")))
        gateway: Gateway = self.app.state.gateway
        relay = None
        started = False  # whether the response has begun (no error answer is possible after that)
        try:
            tenant = gateway.guard.tenancy.authenticate(
                _text(headers.get(b"authorization")), _text(headers.get(b"x-api-key"))
            )
            limit = gateway.config.server.max_body_bytes
            raw = await read_body(_body_chunks(receive), _text(headers.get(b"content-length")), limit)
            relay = gateway.relay(adapter, ids, tenant, received_s)
            await gateway.serve(relay, raw, functools.partial(wait_for_disconnect, receive))
            response_headers = _encode(relay.headers)
            started = True
            if relay.stream is None:
                await send({"type": "http.response.start", "status": 200, "headers": _JSON + response_headers})
                await send({"type": "http.response.body", "body": relay.body or b""})
            else:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE + response_headers})
                await _stream_until_disconnect(relay.events(), receive, send)
        except Exception as exc:
            if isinstance(exc, TriageError):
                gateway.metrics.errors.labels(exc.type).inc()
            if started:  # the client is gone, or the answer broke mid-send: nothing more can be said to it
                log.warning("sending the answer to %s failed: %r", ids.request_id, exc)
            else:
                echo = {"x-triage-request-id": ids.request_id, "x-request-id": ids.client_request_id or ids.request_id}
                routed = relay.headers if relay is not None else {}  # x-triage-model etc. once it was routed
                await send_error(send, exc, {**routed, **echo}, scope, adapter.dialect)
        finally:
            if relay is not None:
                await relay.aclose()


async def _stream_until_disconnect(events: AsyncIterator[bytes], receive: Receive, send: Send) -> None:
    """Relay SSE bytes; if the client leaves, stop at once (the relay's close then cancels the engine's work)."""
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
    if pump.done() and not pump.cancelled() and pump.exception() is not None:
        log.warning("stream relay failed: %r", pump.exception())


async def _pump(events: AsyncIterator[bytes], send: Send) -> None:
    async for chunk in events:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def read_body(chunks: AsyncIterator[bytes], declared_length: str | None, limit_bytes: int) -> bytes:
    """The whole request body, refusing early (413) when it is, or says it is, over the limit."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit_bytes:
        raise RequestTooLarge(
            f"request body is {declared_length} bytes; the limit is {limit_bytes} bytes (server.max_body_bytes)"
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit_bytes:
            raise RequestTooLarge(f"request body exceeds the limit of {limit_bytes} bytes (server.max_body_bytes)")
        parts.append(chunk)
    if size == 0:
        raise InvalidRequest("request body is empty; send a JSON object")
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns once the ASGI server reports that the client has gone (call after the body is read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def send_error(
    send: Send, exc: BaseException, headers: dict[str, str], scope: Scope, dialect: Dialect = "openai"
) -> None:
    error = http_error(exc, f"{scope['method']} {scope['path']}", dialect)
    out = _JSON + _encode({**headers, **error.headers})
    await send({"type": "http.response.start", "status": error.status, "headers": out})
    await send({"type": "http.response.body", "body": error.body})


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
