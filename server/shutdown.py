"""Graceful shutdown: on SIGTERM stop taking requests, let open ones finish within `server.drain_s`, then end
the streams still running with an OpenAI-style SSE error event (never a silent cut), and let the lifespan flush
the stores.

uvicorn already stops accepting connections on SIGTERM and waits up to `timeout_graceful_shutdown` for open
ones; `DrainingServer` tells the app's `Drain` when that starts, so new requests on kept-alive connections get a
503 and long streams are ended cleanly before uvicorn would cancel them. Knows nothing about routing or engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from .errors import EngineUnavailable, retry_after

log = logging.getLogger(__name__)
GRACE_S = 5.0  # uvicorn's own deadline is drain_s plus this: time to send the error events and close


class Drain:
    """Shared by the server (which starts it), the gateway (which checks it on each request) and each relay
    (which ends its stream once `expired`)."""

    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.draining = False
        self.expired = False  # past the deadline: open streams end at their next chunk

    def begin(self) -> None:
        if self.draining:
            return
        self.draining = True
        log.info("shutting down: draining open requests for up to %.0f s", self.drain_s)
        asyncio.get_running_loop().call_later(self.drain_s, self._expire)

    def _expire(self) -> None:
        self.expired = True

    def check(self) -> None:
        """Refuse a new request while draining (503 with Retry-After, so clients go elsewhere)."""
        if self.draining:
            raise EngineUnavailable(
                "Triage is shutting down; retry the request (another instance will take it)",
                code="shutting_down",
                headers=retry_after(1),
            )


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling `app.state.drain` when a shutdown signal arrives."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state = getattr(self.config.loaded_app, "state", None) or getattr(self.config.app, "state", None)
        drain: Drain | None = getattr(state, "drain", None)
        if drain is not None:
            with contextlib.suppress(RuntimeError):  # no running loop yet: nothing to drain
                asyncio.get_running_loop().call_soon(drain.begin)
        super().handle_exit(sig, frame)


def serve(
    app: ASGIApp, *, host: str, port: int, log_level: str, drain_s: float, options: dict[str, Any] | None = None
) -> None:
    """Run `app` under uvicorn until SIGINT/SIGTERM, draining as described above; `options` are more
    `uvicorn.Config` arguments (`connections.uvicorn_options`: the protocol and the connection limits)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        **({"http": "httptools"} | (options or {})),
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=round(drain_s + GRACE_S),
        server_header=False,
        # Triage logs no client addresses, so X-Forwarded-* rewriting is a layer of cost
        # on every request for nothing
        proxy_headers=False,
    )
    DrainingServer(config).run()
