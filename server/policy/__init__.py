"""Routing policies and their registry: configs name a policy by its key in `POLICIES`.

To add one: subclass `Policy`, implement `choose()` (pure; `commit()` books what a real request needs), type
its `policy.options` as a pydantic `Options` class, and add the class to `POLICIES` below.
"""

from __future__ import annotations

from .base import Candidate, Decision, Outcome, Policy, RouteRequest
from .static import StaticPolicy
from .triage import TriagePolicy

POLICIES: dict[str, type[Policy]] = {
    StaticPolicy.name: StaticPolicy,
    TriagePolicy.name: TriagePolicy,
}

__all__ = ["POLICIES", "Candidate", "Decision", "Outcome", "Policy", "RouteRequest"]
