"""Who is calling and what they may do: API key → `Tenant`, and each tenant's rate limits and daily budget.

`Tenancy.authenticate(authorization, x_api_key)` checks a bearer key (or Anthropic's `x-api-key` header) against the
in-memory table of active key hashes (reloaded from the store every few seconds, so `triage keys revoke` takes
effect without a restart). `admit()` enforces requests and tokens per minute (token buckets); `restrict()` narrows a
request's routing options to the key's models and remote permission (and drops remote once the daily dollar budget
is spent); `reserve()` holds a request's estimated tokens against the daily budget before any work, counting what
requests still open have reserved, so concurrent requests cannot overrun it; `settle()` books what was used and
frees the rest. In open mode every caller is `OPEN_TENANT`.
Knows nothing about HTTP frameworks, routing or engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from ..config import ModelConfig
from ..errors import Forbidden, RateLimited, Unauthorized
from ..protocol import RouteOptions
from ..telemetry.metrics import Metrics
from .keys import KeyRecord, KeyStore, hash_key
from .ledger import UsageLedger, utc_day

log = logging.getLogger(__name__)
RELOAD_S = 2.0  # how often active keys are re-read (revocations take effect within this)


@dataclass(slots=True)
class TokenBucket:
    """`rate_per_min` units per minute, bursts up to one minute's worth."""

    rate_per_min: float
    level: float = -1.0  # < 0: full on first use
    at_s: float = 0.0

    def take(self, amount: float, now_s: float) -> float:
        """Take `amount`; 0.0 when granted, else the seconds until it would be."""
        if self.level < 0:
            self.level, self.at_s = self.rate_per_min, now_s
        self.level = min(self.rate_per_min, self.level + (now_s - self.at_s) * self.rate_per_min / 60.0)
        self.at_s = now_s
        if amount <= self.level or (amount > self.rate_per_min and self.level >= self.rate_per_min):
            self.level -= amount  # a request bigger than a minute's worth passes on a full bucket
            return 0.0
        return (amount - self.level) * 60.0 / self.rate_per_min


@dataclass(slots=True)
class Tenant:
    key: KeyRecord | None  # None: open mode
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    day: str = ""
    used_tokens: int = 0  # local tokens this UTC day
    used_usd: float = 0.0  # remote dollars this UTC day
    reserved_tokens: int = 0  # held by this key's open requests, not yet booked
    reserved_usd: float = 0.0

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.id

    @property
    def allow_remote(self) -> bool:
        if self.key is None:
            return True
        if self.key.daily_usd is not None and self.used_usd >= self.key.daily_usd:
            return False
        return self.key.allow_remote


OPEN_TENANT = Tenant(None)


@dataclass(slots=True)
class Reservation:
    """What one open request holds against its key's daily budget; settled once."""

    tenant: Tenant
    request_id: str
    tokens: int
    usd: float
    settled: bool = False


class Tenancy:
    def __init__(
        self, mode: str, metrics: Metrics, store: KeyStore | None = None, ledger: UsageLedger | None = None
    ) -> None:
        self.mode = mode
        self.metrics = metrics
        self.store = store
        self.ledger = ledger
        self._keys: dict[str, KeyRecord] = {}  # hash -> record
        self._tenants: dict[str, Tenant] = {}  # key id -> live counters
        self._task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.mode == "open"

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.store is None:
            return
        self.reload()
        if self.ledger is not None:
            day = utc_day()
            for kid, (tokens, usd) in self.ledger.today().items():
                tenant = self._tenants.get(kid)
                if tenant is not None:
                    tenant.day, tenant.used_tokens, tenant.used_usd = day, tokens, usd
        self._task = asyncio.create_task(self._reload_loop(), name="key-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reload(self) -> None:
        if self.store is None:
            return
        self._keys = self.store.active_by_hash()
        active = {r.id: r for r in self._keys.values()}
        for kid in list(self._tenants):
            if kid not in active:
                del self._tenants[kid]
        for kid, record in active.items():
            tenant = self._tenants.get(kid)
            if tenant is None or tenant.key != record:
                old = tenant
                tenant = self._tenants[kid] = Tenant(
                    record,
                    TokenBucket(record.rpm) if record.rpm else None,
                    TokenBucket(record.tpm) if record.tpm else None,
                )
                if old is not None:
                    tenant.day, tenant.used_tokens, tenant.used_usd = old.day, old.used_tokens, old.used_usd

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_S)
            try:
                self.reload()
            except Exception:  # a locked or broken file must not stop reloading; keep the last table
                log.exception("reloading API keys failed; keeping the previous table")

    # -- the request path -------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, x_api_key: str | None = None) -> Tenant:
        """The caller of a request whose headers were `Authorization` and `x-api-key` (the Anthropic SDKs send
        that one); Authorization wins when both are present."""
        if self.open:
            return OPEN_TENANT
        if not authorization and not x_api_key:
            self.metrics.auth_rejected.labels("missing").inc()
            raise Unauthorized(
                "no API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>' (create one with "
                "`triage keys create NAME`)"
            )
        if authorization:
            scheme, _, key = authorization.partition(" ")
            key = key if scheme.lower() == "bearer" else ""
        else:
            key = x_api_key or ""
        record = self._keys.get(hash_key(key.strip())) if key.strip() else None
        if record is None:
            self.metrics.auth_rejected.labels("invalid").inc()
            raise Unauthorized("invalid or revoked API key")
        return self._tenants[record.id]

    def admit(self, tenant: Tenant, tokens: int) -> None:
        """Requests and tokens per minute, before any work; raises RateLimited (the daily budget: `reserve`)."""
        key = tenant.key
        if key is None:
            return
        now_s = time.monotonic()
        for bucket, amount, what in ((tenant.requests, 1, "requests"), (tenant.tokens, tokens, "tokens")):
            if bucket is None:
                continue
            wait_s = bucket.take(amount, now_s)
            if wait_s > 0:
                self.metrics.auth_rejected.labels(f"{what}_per_minute").inc()
                raise RateLimited(
                    f"key {key.id} is over its limit of {bucket.rate_per_min:g} {what} per minute", retry_after_s=wait_s
                )

    def restrict(self, tenant: Tenant, options: RouteOptions) -> RouteOptions:
        """The request's routing options narrowed to what the key allows; 403 if nothing is left."""
        key = tenant.key
        if key is None or key.models is None:
            return options
        if options.models is None:
            return options.model_copy(update={"models": sorted(key.models)})
        allowed = [m for m in options.models if m in key.models]
        if not allowed:
            raise Forbidden(f"key {key.id} may not use any of {', '.join(options.models)}", param="route.models")
        return options.model_copy(update={"models": allowed})

    def check_model(self, tenant: Tenant, model: ModelConfig) -> None:
        """A model the client named: 403 unless the key may use it."""
        key = tenant.key
        if key is None:
            return
        if key.models is not None and model.name not in key.models:
            self.metrics.auth_rejected.labels("model").inc()
            raise Forbidden(
                f"key {key.id} may not use model '{model.name}'; it may use: {', '.join(sorted(key.models))}",
                param="model",
            )
        if model.remote and not tenant.allow_remote:
            self.metrics.auth_rejected.labels("remote").inc()
            raise Forbidden(
                f"key {key.id} may not use remote model '{model.name}' (not allowed, or today's "
                "remote budget is spent)",
                param="model",
            )

    def reserve(self, tenant: Tenant, request_id: str, model: ModelConfig, tokens: int) -> Reservation | None:
        """Hold `tokens` (and their price on a remote model) against the key's daily budgets; raises RateLimited
        when what is used plus what open requests hold plus this would exceed one. None in open mode."""
        key = tenant.key
        if key is None:
            return None
        self._roll_day(tenant)
        usd = tokens * model.profile.usd_per_1m_tokens / 1e6 if model.remote else 0.0
        if (
            not model.remote
            and key.daily_tokens is not None
            and tenant.used_tokens + tenant.reserved_tokens + tokens > key.daily_tokens
        ):
            self.metrics.auth_rejected.labels("daily_budget").inc()
            raise RateLimited(
                f"key {key.id} has used {tenant.used_tokens} and holds {tenant.reserved_tokens} in open requests of "
                f"its {key.daily_tokens} local tokens today (UTC); this request needs up to {tokens}",
                retry_after_s=_seconds_to_midnight() if tenant.reserved_tokens == 0 else 1.0,
                code="insufficient_quota",
            )
        if model.remote:
            tenant.reserved_usd += usd
        else:
            tenant.reserved_tokens += tokens
        return Reservation(tenant, request_id, 0 if model.remote else tokens, usd)

    def settle(self, reservation: Reservation, model: ModelConfig | None, tokens: int) -> None:
        """Free the reservation and book `tokens` used on `model` (the model that answered; None: nothing ran)."""
        if reservation.settled:
            return
        reservation.settled = True
        tenant = reservation.tenant
        tenant.reserved_tokens -= reservation.tokens
        tenant.reserved_usd -= reservation.usd
        key = tenant.key
        if key is None or model is None or tokens <= 0:
            return
        self._roll_day(tenant)
        usd = tokens * model.profile.usd_per_1m_tokens / 1e6 if model.remote else 0.0
        if model.remote:
            tenant.used_usd += usd
        else:
            tenant.used_tokens += tokens
        if self.ledger is not None:
            self.ledger.record(reservation.request_id, key.id, model.name, model.remote, tokens, usd)

    def _roll_day(self, tenant: Tenant) -> None:
        day = utc_day()
        if tenant.day != day:
            tenant.day, tenant.used_tokens, tenant.used_usd = day, 0, 0.0


def _seconds_to_midnight() -> float:
    return 86400.0 - time.time() % 86400.0


def resolve_mode(mode: str | None, loopback: bool) -> str:
    """`auth.mode`, or its default: open on a loopback address, keys anywhere else."""
    if mode is not None:
        return mode
    return "open" if loopback else "keys"
