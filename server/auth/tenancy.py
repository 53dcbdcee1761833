"""Who is calling and what they may do: API key → `Tenant`, and each tenant's rate limits and daily budget.

`Tenancy.authenticate(authorization, x_api_key)` checks a bearer key (or Anthropic's `x-api-key` header) against
the in-memory table of active key hashes (reloaded from the store every few seconds, so `triage keys revoke`
takes effect without a restart). `admit()` enforces requests and tokens per minute (token buckets); `restrict()`
narrows a request's routing options to the key's models and remote permission (and drops remote once the daily
dollar budget is spent); `reserve()` holds a request's worst case against the key's daily budget before any
work, in the shared store (`budget.py`), so neither concurrent requests nor several routers on one store can
overrun it; `settle()` books what was used (the engine's reported usage when there is one) and frees the hold;
`admit_feedback()` rate-limits feedback per key (open mode: per client address). In open mode every caller is
`OPEN_TENANT`. Knows nothing about HTTP frameworks, routing or engines.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

from ..config import ModelConfig
from ..errors import EngineUnavailable, Forbidden, RateLimited, Unauthorized, retry_after
from ..intake import Demand
from ..protocol import RouteOptions
from ..telemetry.metrics import Metrics
from ..ticker import Ticker
from .budget import BudgetBook, Hold, Limit, Refusal
from .keys import KeyRecord, KeyStore, hash_key
from .ledger import UsageLedger, utc_day
from .ratelimit import Limiter, TokenBucket

log = logging.getLogger(__name__)
RELOAD_S = 2.0  # how often active keys are re-read (revocations take effect within this)


@dataclass(slots=True)
class Tenant:
    key: KeyRecord | None  # None: open mode
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    day: str = ""
    used_tokens: int = 0  # local tokens this UTC day
    used_usd: float = 0.0  # remote dollars this UTC day

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
    """One keyed request's account: what to book when the engine reports no usage, and its hold in the shared
    store when its key has a budget for the model; settled once."""

    tenant: Tenant
    request_id: str
    tokens: int  # booked when the engine reports no usage: the hold, or the planning estimate
    hold: Hold | None = None
    settled: bool = False

    @property
    def max_tokens(self) -> int | None:
        """Output tokens per sequence to send upstream (the request set none), or None."""
        return None if self.hold is None else self.hold.max_tokens


class Tenancy:
    def __init__(
        self,
        mode: str,
        metrics: Metrics,
        store: KeyStore | None = None,
        ledger: UsageLedger | None = None,
        budget: BudgetBook | None = None,
        feedback_per_minute: int = 60,
    ) -> None:
        self.mode = mode
        self.metrics = metrics
        self.store = store
        self.ledger = ledger
        self.budget = budget
        self.feedback = Limiter(feedback_per_minute)
        self._keys: dict[str, KeyRecord] = {}  # hash -> record
        self._tenants: dict[str, Tenant] = {}  # key id -> live counters
        self._reloader = Ticker(RELOAD_S, self.reload, "key-reload")

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
        self._reloader.start()  # a locked or broken file keeps the last table (the ticker logs it)

    async def stop(self) -> None:
        await self._reloader.stop()

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

    async def reserve(self, tenant: Tenant, request_id: str, model: ModelConfig, demand: Demand) -> Reservation | None:
        """Hold the request's worst case against the key's daily budget on `model` (in the shared store, see
        `budget.py`); raises RateLimited when it does not fit. None in open mode."""
        key = tenant.key
        if key is None:
            return None
        limit = _limit(key, model)
        if limit is None or self.budget is None:
            return Reservation(tenant, request_id, demand.estimate)
        try:
            held = await self.budget.reserve(limit, request_id, demand)
        except sqlite3.Error as exc:
            log.error("budget store %s failed on reserve: %s", self.budget.path, exc)
            raise EngineUnavailable(
                "the budget store is not available now; retry the request", headers=retry_after(1)
            ) from None
        if isinstance(held, Refusal):
            self.metrics.auth_rejected.labels("daily_budget").inc()
            raise _over_budget(key, limit, held)
        tenant.day, tenant.used_tokens, tenant.used_usd = held.day, held.used.tokens, held.used.usd
        return Reservation(tenant, request_id, held.tokens, held)

    async def settle(self, reservation: Reservation, model: ModelConfig | None, tokens: int) -> None:
        """Free the reservation and book `tokens` used on `model` (the model that answered; None: nothing ran)."""
        if reservation.settled:
            return
        reservation.settled = True
        tenant = reservation.tenant
        key = tenant.key
        if key is None:
            return
        remote = model is not None and model.remote
        usd = tokens * model.profile.usd_per_1m_tokens / 1e6 if model is not None and remote else 0.0
        hold = reservation.hold
        if hold is not None and self.budget is not None:
            try:
                used = await self.budget.settle(hold, model.name if model else "", remote, tokens, usd)
            except sqlite3.Error as exc:  # the hold expires on its own; the usage row is lost
                log.error("budget store %s failed on settle of %s: %s", self.budget.path, hold.request_id, exc)
                return
            tenant.day, tenant.used_tokens, tenant.used_usd = hold.day, used.tokens, used.usd
            return
        if model is None or tokens <= 0:
            return
        self._roll_day(tenant)
        if remote:
            tenant.used_usd += usd
        else:
            tenant.used_tokens += tokens
        if self.ledger is not None:
            self.ledger.record(reservation.request_id, key.id, model.name, remote, tokens, usd)

    def admit_feedback(self, tenant: Tenant, client: str | None) -> None:
        """Feedback calls per minute, per key (open mode: per client address); raises RateLimited."""
        who = tenant.key_id or f"address {client or 'unknown'}"
        wait_s = self.feedback.take(who, time.monotonic())
        if wait_s > 0:
            self.metrics.auth_rejected.labels("feedback_per_minute").inc()
            raise RateLimited(
                f"{'key ' + who if tenant.key_id else who} is over its limit of {self.feedback.rate_per_min:g} "
                "feedback calls per minute (server.feedback_per_minute)",
                retry_after_s=wait_s,
            )

    def _roll_day(self, tenant: Tenant) -> None:
        day = utc_day()
        if tenant.day != day:
            tenant.day, tenant.used_tokens, tenant.used_usd = day, 0, 0.0


def _limit(key: KeyRecord, model: ModelConfig) -> Limit | None:
    """The key's budget that applies on `model`: daily_usd on a priced remote model, daily_tokens on a local one."""
    if model.remote:
        price = model.profile.usd_per_1m_tokens / 1e6
        return None if key.daily_usd is None or price <= 0 else Limit(key.id, key.daily_usd, True, price)
    return None if key.daily_tokens is None else Limit(key.id, key.daily_tokens, False, 0.0)


def _over_budget(key: KeyRecord, limit: Limit, refusal: Refusal) -> RateLimited:
    used, held = refusal.used, refusal.held
    if limit.remote:
        what = f"${used.usd:.6f} and open requests hold ${held.usd:.6f} of its ${limit.daily:g} for remote models"
    else:
        what = f"{used.tokens} and open requests hold {held.tokens} of its {limit.daily:g} local tokens"
    return RateLimited(
        f"key {key.id} has used {what} today (UTC); this request needs at least {refusal.needed_tokens} tokens",
        retry_after_s=_seconds_to_midnight() if held.tokens == 0 and held.usd == 0 else 1.0,
        code="insufficient_quota",
    )


def _seconds_to_midnight() -> float:
    return 86400.0 - time.time() % 86400.0


def resolve_mode(mode: str | None, loopback: bool) -> str:
    """`auth.mode`, or its default: open on a loopback address, keys anywhere else."""
    if mode is not None:
        return mode
    return "open" if loopback else "keys"
