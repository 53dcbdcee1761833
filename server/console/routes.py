"""The console's HTTP routes: the page and its two assets, one JSON state endpoint, one live stream, and one
decision's detail. Thin: each checks access (`access.py`) and hands over what `Console` builds.

- `GET /dashboard`: the page (vanilla JS and CSS shipped in `static/`, no build step, nothing from a CDN),
  with a Content-Security-Policy that allows only this origin's scripts, styles and requests.
- `GET /dashboard/api/state?since=V`: one snapshot (decisions changed after version V).
- `GET /dashboard/api/stream?since=V`: the same snapshot as a server-sent event every `TICK_S`, each carrying only
  the decisions that changed since the last; ends after `STREAM_MAX_S` (the page reconnects from its version).
- `GET /dashboard/api/decisions/{request_id}`: one decision with every candidate's terms.

The page and assets carry no data and need no key; every `/dashboard/api/` route does (see `access.py`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..errors import DecisionNotFound, RouteNotFound, TriageError
from ..protocol import ErrorResponse
from .access import authorize
from .state import Console

TICK_S = 0.5  # how often the stream sends a snapshot
STREAM_MAX_S = 600.0  # one stream's length; the page reconnects where it left off
JSON = "application/json"
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
_API_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
    403: {"model": ErrorResponse, "description": "Not an admin key, or open mode on a non-loopback host"},
}

router = APIRouter()


@functools.cache
def asset(name: str) -> bytes:
    """A file of `static/`, read once (from the installed package, wherever it lives)."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def console_of(request: Request) -> Console:
    """The app's console, once the caller has shown it may use it."""
    console: Console = request.app.state.console
    gateway = console.gateway
    authorize(gateway.guard.tenancy, gateway.config.server, request.headers.get("authorization"))
    return console


@router.get("/dashboard", include_in_schema=False)
async def page() -> Response:
    return Response(asset("index.html"), media_type=ASSETS["index.html"], headers=_PAGE_HEADERS)


@router.get("/dashboard/assets/{name}", include_in_schema=False)
async def static_asset(name: str) -> Response:
    if name not in ASSETS or name == "index.html":
        raise RouteNotFound(f"no console asset '{name}'; the assets are app.js and style.css")
    return Response(asset(name), media_type=ASSETS[name], headers=_PAGE_HEADERS)


@router.get("/dashboard/api/state", responses=_ERRORS)
async def state(request: Request, since: int = Query(0, ge=0, description="Last version seen")) -> Response:
    """Engines, GPUs, routing windows and the decisions changed after version `since` (admin only)."""
    payload, _ = console_of(request).snapshot(since)
    return Response(payload, media_type=JSON, headers=_API_HEADERS)


@router.get("/dashboard/api/decisions/{request_id}", responses={**_ERRORS, 404: {"model": ErrorResponse}})
async def decision(request: Request, request_id: str) -> Response:
    """One recent decision with every candidate's terms (admin only)."""
    payload = console_of(request).detail(request_id)
    if payload is None:
        raise DecisionNotFound(
            f"no recent decision '{request_id}'; the console keeps the latest few hundred "
            "(`triage decisions` reads older ones from the audit log)"
        )
    return Response(payload, media_type=JSON, headers=_API_HEADERS)


@router.get("/dashboard/api/stream", include_in_schema=False)
async def stream(request: Request, since: int = Query(0, ge=0)) -> Response:
    console = console_of(request)
    events = _events(console, request.headers.get("authorization"), since)
    headers = {**_API_HEADERS, "x-accel-buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _events(console: Console, authorization: str | None, since: int) -> AsyncIterator[bytes]:
    """A snapshot per tick, bounded in time; access is checked again each tick (a revoked key stops it), and the
    stream ends when the router starts draining (so that it never holds a shutdown up)."""
    gateway = console.gateway
    loop = asyncio.get_running_loop()
    end_s = loop.time() + STREAM_MAX_S
    version = since
    while not gateway.guard.drain.draining:
        try:
            authorize(gateway.guard.tenancy, gateway.config.server, authorization)
        except TriageError as exc:
            yield b"event: denied\ndata: " + exc.body() + b"\n\n"
            return
        payload, version = console.snapshot(version)
        yield b"event: state\ndata: " + payload + b"\n\n"
        if loop.time() >= end_s:
            return
        await asyncio.sleep(TICK_S)


def attach_console(app: FastAPI) -> None:
    app.include_router(router)
