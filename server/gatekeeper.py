"""ASGI middleware in front of every route: refuses ambiguous credentials, and asks for a key where the app itself
would not.

- More than one `Authorization` header is a 401 on every route: one reader would take the first and another
  the last, so the request has no single caller.
- With API keys required, the routes that describe the server (`/metrics`, `/docs`, `/redoc`,
  `/openapi.json`) need a valid key like the API does; `server.metrics_anonymous_loopback: true` lets clients
  on loopback (a local Prometheus) read `/metrics` without one. `/health` and `/ready` stay open for probes.

The key is checked by the gateway's `Tenancy`, the one place that knows keys; before the app has started there
is nothing to check against and requests pass. Knows nothing about routing.
"""

from __future__ import annotations

from typing import Any

from .config import ServerConfig
from .errors import TriageError, Unauthorized
from .frontdoor import ASGIApp, Receive, Scope, Send, send_error
from .protocols import dialect_of

INTROSPECTION = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
LOOPBACK = frozenset({"127.0.0.1", "::1"})


class Gatekeeper:
    def __init__(self, app: ASGIApp, state: Any, server: ServerConfig) -> None:
        """`state`: the FastAPI app's state, where the lifespan puts the gateway."""
        self.app = app
        self.state = state
        self.metrics_anonymous_loopback = server.metrics_anonymous_loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self._check(scope)
            except TriageError as exc:
                await send_error(send, exc, {}, scope, dialect_of(scope["path"]))
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        authorization = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(authorization) > 1:
            raise Unauthorized(f"{len(authorization)} Authorization headers; send exactly one")
        path = scope["path"]
        gateway = getattr(self.state, "gateway", None)
        if path not in INTROSPECTION or gateway is None:
            return
        client = scope.get("client")
        if path == "/metrics" and self.metrics_anonymous_loopback and client and client[0] in LOOPBACK:
            return
        gateway.guard.tenancy.authenticate(authorization[0].decode("latin-1") if authorization else None)
