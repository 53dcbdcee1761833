"""Routing baselines that are not product policies: what Triage is measured against, and the oracle above it.

Each is a `Policy` that applies the product's hard constraints (`eligibility.ineligible_reason`: allow list,
context length, health, in-flight cap) and then decides by one signal only:
  least-busy    fewest requests in flight (the router's own counter)
  random        a seeded uniform draw
  best-single   always the one model that was best on the training data
  quality-only  the highest score of a per-request quality estimate (the learned predictor; ties go to the
                model the predictor itself prefers), load ignored
  oracle        among the models that answer this request correctly (ground truth), the cheapest free one:
                free = fewer requests in flight than the engine runs at once (max_num_seqs), so it starts
                at once; then lowest price per token, then fewest in flight; a ceiling no real router reaches
Knows nothing about engines, time or how the signals were learned.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import ClassVar

from server.config import ModelConfig, PolicyConfig
from server.load import LoadBoard
from server.policy import Decision, Policy, RouteRequest
from server.policy.base import Candidate
from server.policy.eligibility import ineligible_reason, raise_no_candidate

# request -> one score per configured model (higher is better), e.g. the quality predictor's probabilities
Scorer = Callable[[RouteRequest], Sequence[float]]


class SingleSignalPolicy(Policy):
    """Filter by the product's eligibility rules, then `pick` among what is left."""

    name: ClassVar[str] = "single-signal"

    def eligible(self, request: RouteRequest) -> list[int]:
        """Indices of the models that may serve `request`; raises the gateway's error when none may."""
        ok: list[int] = []
        refused: list[Candidate] = []
        for i, model in enumerate(self.models):
            why_not = ineligible_reason(model, self.load.engine(model.name), request, self.settings.allow_remote)
            if why_not is None:
                ok.append(i)
            else:
                refused.append(Candidate(model.name, False, why_not))
        if not ok:
            raise_no_candidate(refused)
        return ok

    def pick(self, request: RouteRequest, eligible: list[int]) -> int:
        raise NotImplementedError

    def choose(self, request: RouteRequest) -> Decision:
        chosen = self.pick(request, self.eligible(request))
        return Decision(self.models[chosen].name, self.name, [])

    def in_flight(self, i: int) -> int:
        return self.load.engine(self.models[i].name).in_flight


class LeastBusyPolicy(SingleSignalPolicy):
    name: ClassVar[str] = "least-busy"

    def pick(self, request: RouteRequest, eligible: list[int]) -> int:
        return min(eligible, key=self.in_flight)


class RandomPolicy(SingleSignalPolicy):
    name: ClassVar[str] = "random"

    def __init__(self, models: list[ModelConfig], load: LoadBoard, settings: PolicyConfig, seed: int = 7) -> None:
        super().__init__(models, load, settings)
        self.rng = random.Random(seed)

    def pick(self, request: RouteRequest, eligible: list[int]) -> int:
        return self.rng.choice(eligible)


class BestSinglePolicy(SingleSignalPolicy):
    name: ClassVar[str] = "best-single"

    def __init__(self, models: list[ModelConfig], load: LoadBoard, settings: PolicyConfig, model: str) -> None:
        super().__init__(models, load, settings)
        self.index = next(i for i, m in enumerate(models) if m.name == model)

    def eligible(self, request: RouteRequest) -> list[int]:
        ok = super().eligible(request)
        if self.index not in ok:  # the one model is at its cap: the client gets the 429 it would get
            reason = ineligible_reason(
                self.models[self.index], self.load.engine(self.models[self.index].name), request, False
            )
            raise_no_candidate([Candidate(self.models[self.index].name, False, reason or "unavailable")])
        return [self.index]

    def pick(self, request: RouteRequest, eligible: list[int]) -> int:
        return self.index


class QualityOnlyPolicy(SingleSignalPolicy):
    name: ClassVar[str] = "quality-only"
    TIE = 1e-6  # scores this close count as equal (calibrated probabilities are often step functions)

    def __init__(
        self,
        models: list[ModelConfig],
        load: LoadBoard,
        settings: PolicyConfig,
        scorer: Scorer,
        tie_break: Sequence[float] | None = None,
    ) -> None:
        super().__init__(models, load, settings)
        self.scorer = scorer
        self.tie_break = tie_break or [0.0] * len(models)  # per model, higher wins a tie (e.g. overall quality)

    def pick(self, request: RouteRequest, eligible: list[int]) -> int:
        scores = self.scorer(request)
        best = max(scores[i] for i in eligible)
        return max((i for i in eligible if scores[i] >= best - self.TIE), key=lambda i: self.tie_break[i])


class OraclePolicy(SingleSignalPolicy):
    name: ClassVar[str] = "oracle"

    def __init__(
        self,
        models: list[ModelConfig],
        load: LoadBoard,
        settings: PolicyConfig,
        correct: Callable[[RouteRequest], frozenset[str]],
        usd_per_token: Sequence[float],
    ) -> None:
        super().__init__(models, load, settings)
        self.correct = correct  # request -> the models that answer it correctly
        self.usd_per_token = usd_per_token

    def pick(self, request: RouteRequest, eligible: list[int]) -> int:
        right = self.correct(request)
        pool = [i for i in eligible if self.models[i].name in right] or eligible  # nobody right: any
        free = [i for i in pool if self.in_flight(i) < self.models[i].profile.max_num_seqs]
        if not free:  # every such engine queues: the least busy one
            return min(pool, key=self.in_flight)
        return min(free, key=lambda i: (self.usd_per_token[i], self.in_flight(i)))
