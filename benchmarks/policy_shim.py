"""Temporary bridge to the policy interface that is landing on main (issue 11): `choose` pure, `commit` books a
real request, `observe` takes an `Outcome`, the static policy is called `static`. Benchmarks call these three
names; once main has the new interface this module goes and they call the policy directly.
"""

from __future__ import annotations

from enum import StrEnum

from server.policy import POLICIES, Decision, Policy, RouteRequest

try:
    from server.policy.base import Outcome  # type: ignore[attr-defined]

    HAS_OUTCOME = True
except ImportError:  # the interface of today: observe(..., ok: bool, ...)
    HAS_OUTCOME = False

    class Outcome(StrEnum):  # type: ignore[no-redef]
        OK = "ok"
        ENGINE_FAILURE = "engine_failure"
        REFUSED = "refused"
        CANCELLED = "cancelled"


STATIC: type[Policy] = POLICIES["static"] if "static" in POLICIES else POLICIES["keyword"]


def commit(policy: Policy, request: RouteRequest, decision: Decision) -> Decision:
    """Book a real request (the new `Policy.commit`); today `choose` already booked it."""
    book = getattr(policy, "commit", None)
    return decision if book is None else book(request, decision)  # type: ignore[no-any-return]


def observe(policy: Policy, request_id: str, model: str, outcome: Outcome, latency_s: float) -> None:
    if HAS_OUTCOME:
        policy.observe(request_id, model, outcome, latency_s)  # type: ignore[arg-type]
    else:
        policy.observe(request_id, model, outcome is Outcome.OK, latency_s)
