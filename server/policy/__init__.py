"""Routing policies and their registry: configs name a policy by its key in `POLICIES`.

To add one: subclass `Policy`, implement `choose()`, and add the class to `POLICIES` below.
"""

from __future__ import annotations

from .base import Candidate, Decision, Policy, RouteRequest
from .keyword import KeywordPolicy
from .triage import TriagePolicy

POLICIES: dict[str, type[Policy]] = {
    KeywordPolicy.name: KeywordPolicy,
    TriagePolicy.name: TriagePolicy,
}

__all__ = ["POLICIES", "Candidate", "Decision", "Policy", "RouteRequest"]
