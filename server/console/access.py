"""Who may open the operator console: anyone on a loopback-bound router in open mode; with API keys on, only
admin keys (`triage keys create NAME --admin`).

The console shows every tenant's decisions and the engines' load, so an ordinary key is refused (403) and an
open-mode router bound to a non-loopback address refuses everyone: the operator should turn keys on there.

The page sends the key as `Authorization: Bearer ...` on every call, its live stream included (it reads the
stream with `fetch`, which can set headers; `EventSource` cannot). So there is no cookie, no second kind of
credential to sign, expire or revoke, and no cross-site request can ride on a browser's ambient credentials;
a revoked key stops a stream at its next tick. Knows nothing about what the console shows.
"""

from __future__ import annotations

from ..auth import Tenancy
from ..config import ServerConfig
from ..errors import Forbidden, Unauthorized


def authorize(tenancy: Tenancy, server: ServerConfig, authorization: str | None) -> None:
    """Return if the caller may use the console; raise Unauthorized (401) or Forbidden (403) saying why not."""
    if tenancy.open:
        if server.loopback:
            return
        raise Forbidden(
            f"the console is open without a key only on a loopback host, and this router listens on {server.host}; "
            "set auth.mode: keys and use an admin key (triage keys create NAME --admin)",
            code="console_forbidden",
        )
    try:
        tenant = tenancy.authenticate(authorization)
    except Unauthorized as exc:
        raise Unauthorized(f"{exc.message}; the console needs an admin key (triage keys create NAME --admin)") from None
    key = tenant.key
    if key is None or not key.admin:
        raise Forbidden(
            f"key {tenant.key_id} is not an admin key; the console needs one (triage keys create NAME --admin)",
            code="console_forbidden",
        )
