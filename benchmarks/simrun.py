"""Replay a request trace against simulated engines in virtual time, with a real policy over a real LoadBoard.

The engines are the served simulator's `SimEngine` on a `VirtualClock`: the same scheduler (continuous
batching, chunked prefill, KV-cache admission), the same H100-calibrated step times and the same shared-GPU
contention, without HTTP or wall time, so a saturating open-loop stream is exact and repeatable on a 2-core
box. The policy decides as the gateway does: `choose` then `commit` per arrival, `LoadBoard.started` at
dispatch and `finished` at the last token, `observe` with the outcome, and the engines' vLLM-like gauges
(running, waiting, KV-cache use and capacity) scraped every `scrape_s` and read with their age. Remote
providers, where a benchmark has them, are elastic: the profile's idle speed.

Knows nothing about prompts, quality or scoring; `latency_summary` gives the latency side of a result.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from benchmarks.common import percentile
from server.errors import TriageError
from server.load import LoadBoard
from server.policy import Outcome, Policy, RouteRequest
from server.sim.clock import VirtualClock
from server.sim.engine import RequestTooLongError, SimEngine
from server.sim.gpu import SimGPU
from server.sim.sequence import Sequence as SimSequence
from server.sim.spec import SimEngineSpec

REJECTED = "(rejected)"  # the model of a request no model took (429, or no eligible model)
MAX_EVENTS = 50_000_000  # callbacks per replay: a bound, far above what a 30 s trace at 1000 req/s needs


@dataclass(slots=True)
class Shot:
    """One request of a trace: when it arrives, what the policy sees, how long the answer will be."""

    rid: int
    arrival_s: float  # virtual seconds from the start of the run
    request: RouteRequest
    output_tokens: int  # tokens the engine generates (the workload's length model), at most max_output_tokens


@dataclass(slots=True)
class Served:
    """What happened to one shot; times are virtual seconds, inf when it did not happen before the cut."""

    model: str = REJECTED
    first_token_s: float = math.inf
    done_s: float = math.inf
    outcome: str = ""  # an Outcome value once the request ended
    decide_us: float = 0.0  # wall time of choose + commit (the policy's own CPU cost)


@dataclass(frozen=True)
class RemoteSpeed:
    """An elastic remote provider: every request sees the idle TTFT and decode rate."""

    ttft_s: float
    tok_per_s: float


@dataclass
class Cluster:
    """Simulated engines on one virtual clock; engines with the same `gpu` share a `SimGPU`."""

    clock: VirtualClock
    engines: dict[str, SimEngine]
    remote: dict[str, RemoteSpeed] = field(default_factory=dict)

    @classmethod
    def build(cls, specs: Sequence[SimEngineSpec], remote: dict[str, RemoteSpeed] | None = None) -> Cluster:
        clock = VirtualClock()
        gpus: dict[str, SimGPU] = {}
        engines: dict[str, SimEngine] = {}
        for spec in specs:
            engine = SimEngine(spec, gpus.setdefault(spec.gpu, SimGPU(spec.gpu)), clock)
            engine.start()
            engines[spec.name] = engine
        return cls(clock, engines, dict(remote or {}))


def replay(
    policy: Policy, load: LoadBoard, cluster: Cluster, shots: Sequence[Shot], end_s: float, scrape_s: float = 1.0
) -> list[Served]:
    """Run `shots` (sorted by arrival) to virtual time `end_s`; one `Served` per shot, in order.

    The caller points the policy's clock (e.g. `TriagePolicy.clock`) at `cluster.clock.time` beforehand.
    """
    clock, engines = cluster.clock, cluster.engines
    served = [Served() for _ in shots]

    def finish(i: int, model: str, outcome: Outcome) -> None:
        now_s = clock.time()
        served[i].outcome = outcome.value
        if outcome is Outcome.OK:
            served[i].done_s = now_s
        request = shots[i].request
        load.finished(model, request.prompt_tokens, request.max_output_tokens)
        policy.observe(str(shots[i].rid), model, outcome, now_s - shots[i].arrival_s)

    def engine_done(i: int, model: str, seq: SimSequence) -> None:
        if seq.first_token_s is not None:
            served[i].first_token_s = seq.first_token_s
        finish(i, model, Outcome.CANCELLED if seq.aborted else Outcome.OK)

    def arrive(i: int) -> None:
        if i + 1 < len(shots):
            clock.call_at(shots[i + 1].arrival_s, arrive, i + 1)
        shot = shots[i]
        request = shot.request
        t0 = time.perf_counter()
        try:
            decision = policy.commit(request, policy.choose(request))
        except TriageError:  # every model at its in-flight cap (429) or none eligible: the client is refused
            served[i].outcome = Outcome.REFUSED.value
            return
        served[i].decide_us = (time.perf_counter() - t0) * 1e6
        model = served[i].model = decision.model
        load.started(model, request.prompt_tokens, request.max_output_tokens)  # as the gateway books it
        engine = engines.get(model)
        if engine is None:  # remote: elastic
            speed = cluster.remote[model]
            served[i].first_token_s = clock.time() + speed.ttft_s
            done_in_s = speed.ttft_s + shot.output_tokens / speed.tok_per_s
            clock.call_later(done_in_s, finish, i, model, Outcome.OK)
            return
        try:
            engine.submit(
                request.prompt_tokens,
                request.max_output_tokens,
                output_tokens=shot.output_tokens,
                on_finish=partial(engine_done, i, model),
            )
        except RequestTooLongError:  # the engine's 400: the request's fault, not the model's
            finish(i, model, Outcome.REFUSED)

    def scrape() -> None:
        now_s = clock.time()
        for name, engine in engines.items():
            load.record_scrape(
                name, engine.num_running, engine.num_waiting, engine.kv_cache_usage, engine.kv_cache_tokens
            )
            load.engine(name).scraped_at_s = now_s  # the policy reads the scrape's age on this clock
        clock.call_later(scrape_s, scrape)

    clock.call_at(clock.time(), scrape)
    if shots:
        clock.call_at(shots[0].arrival_s, arrive, 0)
    clock.run_until(end_s, MAX_EVENTS)
    return served


def ttft_s(shots: Sequence[Shot], served: Sequence[Served], end_s: float) -> list[float]:
    """Time to first token per shot; a request without one is censored at the cut (end_s - arrival)."""
    return [min(s.first_token_s, end_s) - shot.arrival_s for shot, s in zip(shots, served, strict=True)]


def within_slo(shots: Sequence[Shot], served: Sequence[Served], end_s: float, slo_ttft_s: float) -> list[bool]:
    """Per shot: answered completely before the cut with its first token within the TTFT SLO."""
    return [
        s.done_s <= end_s and s.first_token_s - shot.arrival_s <= slo_ttft_s
        for shot, s in zip(shots, served, strict=True)
    ]


def latency_summary(
    shots: Sequence[Shot], served: Sequence[Served], end_s: float, slo_ttft_s: float, models: Sequence[str]
) -> dict[str, Any]:
    """SLO attainment, TTFT percentiles, where requests went, and the policy's decision cost."""
    ttft = ttft_s(shots, served, end_s)
    good = within_slo(shots, served, end_s, slo_ttft_s)
    n = max(1, len(shots))
    share = Counter(s.model for s in served)
    decide = [s.decide_us for s in served if s.model != REJECTED]
    return {
        "requests": len(shots),
        "slo_attainment": round(sum(good) / n, 4),
        "ttft_p50_ms": round(percentile(ttft, 50) * 1e3, 1),
        "ttft_p99_ms": round(percentile(ttft, 99) * 1e3, 1),
        "rejected_share": round(share[REJECTED] / n, 4),
        "model_share": {m: round(share[m] / n, 4) for m in [*models, REJECTED]},
        "decide_us_mean": round(sum(decide) / len(decide), 2) if decide else None,
    }
