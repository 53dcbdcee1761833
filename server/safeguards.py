"""The reliability and security parts the gateway consults on every request, built together from the config.

`Safeguards` bundles admission control, the circuit breakers, the shutdown drain, the privacy guard and
tenancy, so `serving.py` takes one object and the lifespan starts and stops one thing. `build_safeguards()`
opens the key store only in keys mode (open mode touches no file). Knows nothing about HTTP.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from .admission import Admission
from .auth import KeyStore, Tenancy, resolve_mode
from .auth.budget import BudgetBook
from .auth.ledger import UsageLedger
from .config import TriageConfig
from .health import Breakers
from .load import LoadBoard
from .privacy import PrivacyGuard
from .shutdown import Drain
from .telemetry.metrics import Metrics


@dataclass(slots=True)
class Safeguards:
    admission: Admission
    breakers: Breakers
    drain: Drain
    privacy: PrivacyGuard
    tenancy: Tenancy


def build_safeguards(config: TriageConfig, load: LoadBoard, metrics: Metrics, drain: Drain | None = None) -> Safeguards:
    """Everything but tenancy's key store (see `start_tenancy`): no file, no task."""
    server = config.server
    return Safeguards(
        admission=Admission(server.max_in_flight, server.admission_wait_s, server.max_waiting, metrics),
        breakers=Breakers([m.name for m in config.models], config.breaker, load, metrics),
        drain=drain or Drain(server.drain_s),
        privacy=PrivacyGuard(config.privacy),
        tenancy=Tenancy("open", metrics, feedback_per_minute=server.feedback_per_minute),
    )


def hold_seconds(config: TriageConfig) -> float:
    """How long a budget hold counts: longer than any request may run (its deadline to the first byte, then its
    model's whole-request timeout), so only a dead process's holds ever expire."""
    longest_s = max(m.timeouts.total_s for m in config.models)
    return config.server.request_deadline_s + longest_s + 60.0


async def start_tenancy(config: TriageConfig, metrics: Metrics, stack: AsyncExitStack) -> Tenancy:
    """Tenancy for the configured auth mode; in keys mode opens the store and the usage ledger."""
    mode = resolve_mode(config.auth.mode, config.server.loopback)
    per_minute = config.server.feedback_per_minute
    if mode == "open":
        return Tenancy(mode, metrics, feedback_per_minute=per_minute)
    store = KeyStore.open(config.auth.db)
    stack.callback(store.close)
    ledger = UsageLedger(config.auth.db, on_commit=metrics.usage_committed.inc)
    stack.callback(ledger.close)  # runs before store.close: flushes the queued usage rows
    budget = BudgetBook(config.auth.db, hold_seconds(config), on_commit=metrics.usage_committed.inc)
    stack.callback(budget.close)
    tenancy = Tenancy(mode, metrics, store, ledger, budget, per_minute)
    await tenancy.start()
    stack.push_async_callback(tenancy.stop)
    return tenancy
