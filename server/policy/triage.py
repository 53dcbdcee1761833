"""The Triage policy: task fit x live load x the caller's priorities, local first, learning from outcomes.

For each model: eligibility first (`eligibility.py`, plus the request's `max_cost`), then a utility

    U = w_q * (0.5 + complexity) * quality - w_l * ln(1 + latency / latency_scale) - w_c * cost / cost_scale

where quality is the profile's per-category quality mixed over the classifier's squared category scores (or the
learned predictor's probability for this prompt), moved by feedback (`explore.OutcomeStats`), latency is the
predicted end-to-end time plus `neighbour_weight` times the delay this request would add to co-located engines
(`latency.py`; the prompt prefix an engine still caches from this conversation's earlier turns is not prefilled
again, `affinity.py`), and cost is dollars (GPU-seconds priced at `usd_per_gpu_hour` for local engines). Weights
come from the preset or the request (`presets.py`).

Local first: the best local model that meets the latency target (predicted TTFT within `ttft_target_ms`,
and total within the request's `max_latency_ms`) wins. When none does, or none is healthy, and remote is
allowed, the best remote provider takes the request (overflow); otherwise the best local one does, and the
reason says the target will be missed.

`choose()` is pure, so `/v1/route` can explain a decision without touching anything. `commit()`, for requests
that run, draws exploration (on `explore_share` of them a near-best local candidate is drawn by Thompson
sampling instead), remembers the decision for feedback and the conversation's engine for affinity, and writes
its audit row; `observe()` moves the affinity to the model that really answered. Knows nothing about HTTP.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..config import CATEGORIES, ModelConfig, PolicyConfig
from ..load import LoadBoard
from ..store import DecisionRow, Store
from .affinity import AffinityMap
from .base import Candidate, Decision, Outcome, Policy, RouteRequest
from .eligibility import ineligible_reason, raise_no_candidate
from .explore import PRIOR_STRENGTH, Explorer, OutcomeStats
from .latency import OUTPUT_FILL, LatencyPredictor
from .learned import LearnedQuality
from .presets import resolve_weights

log = logging.getLogger(__name__)


class TriageOptions(BaseModel):
    """`policy.options` of the triage policy."""

    model_config = ConfigDict(extra="forbid")

    latency_scale_s: float = Field(2.0, gt=0, description="Latency at which the latency penalty is w_l * ln 2.")
    cost_scale_usd: float = Field(1e-4, gt=0, description="Cost that costs w_c utility.")
    usd_per_gpu_hour: float = Field(2.0, ge=0, description="Prices local GPU time against remote dollars.")
    ttft_target_ms: float = Field(
        1000.0, gt=0, description="A local model predicted slower than this to first token misses the target."
    )
    neighbour_weight: float = Field(
        0.25, ge=0, description="Weight of the delay a request adds to co-located engines' requests."
    )
    implicit_weight: float = Field(
        0.5, ge=0, description="Failures counted per engine failure (client feedback counts 1 per request)."
    )
    prior_strength: float = Field(PRIOR_STRENGTH, gt=0, description="Pseudo-observations behind each profile number.")
    explore_margin: float = Field(0.1, ge=0, description="Utility gap within which a candidate may be explored.")
    seed: int | None = Field(None, description="Exploration RNG seed (tests).")
    remember: int = Field(100_000, ge=1, description="Recent decisions kept in memory for feedback lookups.")
    affinity_ttl_s: float = Field(
        300.0,
        ge=0,
        description="How long an engine is assumed to keep a conversation's prompt prefix cached (0: no "
        "conversation affinity). vLLM evicts unused prefix blocks only under memory pressure.",
    )
    affinity_entries: int = Field(100_000, ge=1, description="Conversations remembered for affinity at most.")


def _usd_per_token(model: ModelConfig, usd_per_gpu_hour: float) -> float:
    p = model.profile
    if model.remote:
        return p.usd_per_1m_tokens / 1e6
    gpu_s_per_token = p.gpu_s_per_1k_tokens / 1e3
    if gpu_s_per_token == 0.0:  # not profiled: the engine's peak output rate prices its GPU time
        peak = p.peak_decode_tok_per_s or p.decode_tok_per_s * p.max_num_seqs / 3.0
        gpu_s_per_token = 1.0 / peak
    return gpu_s_per_token * usd_per_gpu_hour / 3600.0


class TriagePolicy(Policy):
    name: ClassVar[str] = "triage"
    Options: ClassVar[type[BaseModel]] = TriageOptions
    uses_store: ClassVar[bool] = True

    def __init__(self, models: list[ModelConfig], load: LoadBoard, settings: PolicyConfig) -> None:
        super().__init__(models, load, settings)
        opts: TriageOptions = self.options_of(settings)
        self.latency_scale_s = opts.latency_scale_s
        self.cost_scale_usd = opts.cost_scale_usd
        self.overflow_ttft_s = opts.ttft_target_ms / 1e3
        self.neighbour_weight = opts.neighbour_weight
        self.implicit_weight = opts.implicit_weight
        self.remember = opts.remember
        self.affinity = AffinityMap(opts.affinity_ttl_s, opts.affinity_entries)
        self.prefix_caching = [m.profile.prefix_caching for m in models]  # only these engines reuse a prefix
        self.predictor = LatencyPredictor(models, load)
        self.stats = OutcomeStats(opts.prior_strength)
        self.explorer = Explorer(settings.explore_share, opts.explore_margin, opts.seed)
        # quality[i][category]: the profile's number, or its default, for every known category
        self.quality = [{c: m.profile.quality.get(c, m.profile.quality_default) for c in CATEGORIES} for m in models]
        self.quality_default = [m.profile.quality_default for m in models]
        self.usd_per_token = [_usd_per_token(m, opts.usd_per_gpu_hour) for m in models]
        self.index = {m.name: i for i, m in enumerate(models)}
        self.recent: OrderedDict[str, Booked] = OrderedDict()  # request id -> what feedback needs
        self.store: Store | None = None
        self.clock: Callable[[], float] = time.monotonic  # the LoadBoard's clock; simulations swap in theirs
        self._no_learned: list[float | None] = [None] * len(models)
        self.learned = LearnedQuality.load(settings.quality_predictor, models) if settings.quality_predictor else None

    def attach_store(self, store: Store) -> None:
        self.store = store
        self.stats.load(store.load_stats())
        log.info("triage policy: %d outcome statistics loaded from %s", len(self.stats.counts), store.path)

    # -- the decision ------------------------------------------------------------------------------------

    def _quality(self, i: int, category: str, scores: dict[str, float], learned: list[float | None]) -> float:
        table = self.quality[i]
        shift = self.stats.shift(category, self.models[i].name, table.get(category, self.quality_default[i]))
        predicted = learned[i]
        if predicted is not None:  # the predictor's probability for this very prompt beats the category table
            return predicted + shift
        if scores:  # squared scores: a sharpened mixture, so a classifier's spread-out residue mass does
            q = 0.0  # not drag every prompt towards the generalist model
            total = 0.0
            for c, p in scores.items():
                q += p * p * table.get(c, self.quality_default[i])
                total += p * p
            q = q / total if total > 0 else table.get(category, self.quality_default[i])
        else:
            q = table.get(category, self.quality_default[i])
        return q + shift

    def choose(self, request: RouteRequest) -> Decision:
        now = self.clock()
        options = request.options
        preset, w = resolve_weights(self.settings.preset, options)
        cls = request.classification
        category = cls.category
        quality_weight = w.quality * (0.5 + cls.complexity)
        snap = self.predictor.snapshot(now)
        max_latency_s = options.max_latency_ms / 1e3 if options.max_latency_ms is not None else None
        planned_tokens = request.prompt_tokens + OUTPUT_FILL * request.max_output_tokens
        learned = (
            self.learned.predict(cls.embedding, cls.offers_choices) if self.learned is not None else self._no_learned
        )
        cached = self.affinity.cached_tokens(request.prefixes, now) if request.prefixes else {}

        candidates: list[Candidate] = []
        local_ok: list[Candidate] = []  # eligible local models meeting the latency target
        local_slow: list[Candidate] = []  # eligible local models predicted to miss it
        remote: list[Candidate] = []
        for i, model in enumerate(self.models):
            load = self.load.engine(model.name)
            why_not = ineligible_reason(model, load, request, self.settings.allow_remote)
            cost = self.usd_per_token[i] * planned_tokens
            if why_not is None and options.max_cost is not None and cost > options.max_cost:
                why_not = f"predicted cost ${cost:.2e} > max_cost ${options.max_cost:.2e}"
            if why_not is not None:
                candidates.append(Candidate(model.name, False, why_not))
                continue
            cached_tokens = min(cached.get(model.name, 0), request.prompt_tokens) if self.prefix_caching[i] else 0
            pred = self.predictor.predict(i, snap, now, request.prompt_tokens, request.max_output_tokens, cached_tokens)
            quality = self._quality(i, category, cls.category_scores, learned)
            latency = pred.total_s + self.neighbour_weight * pred.neighbour_s
            utility = (
                quality_weight * quality
                - w.latency * math.log1p(latency / self.latency_scale_s)
                - w.cost * cost / self.cost_scale_usd
            )
            meets = (model.remote or pred.ttft_s <= self.overflow_ttft_s) and (
                max_latency_s is None or pred.total_s <= max_latency_s
            )
            candidate = Candidate(
                model.name,
                True,
                "meets target" if meets else "predicted to miss target",
                round(utility, 5),
                {
                    "quality": round(quality, 4),
                    "ttft_ms": round(pred.ttft_s * 1e3, 1),
                    "latency_ms": round(pred.total_s * 1e3, 1),
                    "neighbour_ms": round(pred.neighbour_s * 1e3, 1),
                    "cost_usd": cost,
                    "in_flight": float(load.in_flight),
                    "cached_tokens": float(cached_tokens),
                },
            )
            candidates.append(candidate)
            if model.remote:
                remote.append(candidate)
            elif meets:
                local_ok.append(candidate)
            else:
                local_slow.append(candidate)

        for group in (local_ok, local_slow, remote):
            group.sort(key=_score, reverse=True)
        overflow = False
        if local_ok:
            chosen = local_ok[0]
            reason = self._explain(category, preset, chosen, local_ok + local_slow)
            ranked = [*local_ok, *local_slow, *remote]
        elif remote:
            chosen, overflow = remote[0], True
            why = self._miss_reason(local_slow, max_latency_s) if local_slow else "no healthy local model"
            reason = f"{category}: overflow to remote {chosen.model}: {why}"
            ranked = [*remote, *local_slow]
        elif local_slow:
            chosen = local_slow[0]
            reason = (
                f"{category}: {chosen.model}, best effort: {self._miss_reason(local_slow, max_latency_s)} "
                "and remote is not allowed"
            )
            ranked = local_slow
        else:
            raise_no_candidate(candidates, request, self.models)
        return Decision(
            chosen.model,
            reason,
            candidates,
            fallbacks=[c.model for c in ranked if c is not chosen],
            overflow=overflow,
            preset=preset,
            explorable=[c.model for c in local_ok] if len(local_ok) > 1 else [],
            quality_weight=quality_weight,
        )

    # -- commit: exploration and memory, for requests that run -------------------------------------------

    def commit(self, request: RouteRequest, decision: Decision) -> Decision:
        """On `explore_share` of real requests a near-best local candidate drawn by Thompson sampling replaces
        the best; then the decision is remembered (for feedback), the conversation so far is booked on the chosen
        model (affinity), and the decision is written to the audit log."""
        if decision.explorable and self.explorer.should_explore():
            decision = self._explore(decision, request.classification.category)
        if request.prefixes:
            self.affinity.record(request.prefixes[-1][0], decision.model, self.clock())
        self._remember(request, decision)
        return decision

    def _explore(self, decision: Decision, category: str) -> Decision:
        by_model = {c.model: c for c in decision.candidates}
        pool = [by_model[m] for m in decision.explorable]
        best = _score(pool[0])
        near = [c for c in pool if _score(c) >= best - self.explorer.margin]
        if len(near) < 2:
            return decision
        options = []
        for k, c in enumerate(near):
            i = self.index[c.model]
            alpha, beta = self.stats.beta(category, c.model, self.quality[i].get(category, self.quality_default[i]))
            options.append((k, _score(c), decision.quality_weight * c.terms["quality"], alpha, beta))
        chosen = near[self.explorer.pick(options)]
        if chosen.model == decision.model:
            return decision
        reason = f"{category}: exploring {chosen.model} (Thompson sampling, near-best); {decision.preset}"
        fallbacks = [decision.model, *(m for m in decision.fallbacks if m != chosen.model)]
        return dataclasses.replace(decision, model=chosen.model, reason=reason, fallbacks=fallbacks, explored=True)

    def _explain(self, category: str, preset: str, chosen: Candidate, eligible: list[Candidate]) -> str:
        t = chosen.terms
        reason = f"{category}: {chosen.model} (quality {t['quality']:.2f}, ttft ~{t['ttft_ms']:.0f} ms; {preset})"
        if t["cached_tokens"] > 0:
            reason += f"; continues the conversation (~{t['cached_tokens']:.0f} prompt tokens cached there)"
        best_quality = max(eligible, key=lambda c: c.terms["quality"])
        if best_quality is not chosen and best_quality.terms["quality"] > t["quality"]:
            reason += (
                f"; {best_quality.model} fits better but is busier (ttft ~"
                f"{best_quality.terms['ttft_ms']:.0f} ms, {best_quality.terms['in_flight']:.0f} in flight)"
            )
        return reason

    def _miss_reason(self, slow: list[Candidate], max_latency_s: float | None) -> str:
        fastest = min(slow, key=lambda c: c.terms["ttft_ms"])
        if max_latency_s is not None:
            return (
                f"no local model meets max_latency_ms {max_latency_s * 1e3:.0f} (fastest {fastest.model}: "
                f"~{fastest.terms['latency_ms']:.0f} ms)"
            )
        return (
            f"no local model meets the {self.overflow_ttft_s * 1e3:.0f} ms TTFT target (fastest "
            f"{fastest.model}: ~{fastest.terms['ttft_ms']:.0f} ms)"
        )

    # -- memory, feedback, outcomes --------------------------------------------------------------------

    def _remember(self, request: RouteRequest, decision: Decision) -> None:
        cls = request.classification
        prefix = request.prefixes[-1][0] if request.prefixes else None
        self.recent[request.request_id] = Booked(cls.category, decision.model, request.key_id, prefix=prefix)
        if len(self.recent) > self.remember:
            self.recent.popitem(last=False)
        if self.store is not None:
            self.store.record_decision(
                DecisionRow(
                    request_id=request.request_id,
                    client_request_id=request.client_request_id,
                    key_id=request.key_id,
                    ts=time.time(),
                    category=cls.category,
                    complexity=cls.complexity,
                    prompt=request.prompt_text,
                    model=decision.model,
                    reason=decision.reason,
                    preset=decision.preset,
                    explored=decision.explored,
                    overflow=decision.overflow,
                    candidates=[c.as_dict() for c in decision.candidates],
                )
            )

    def _lookup(self, request_id: str) -> Booked | None:
        found = self.recent.get(request_id)
        if found is None and self.store is not None:
            row = self.store.lookup(request_id)
            if row is not None:  # cached, so that a second rating before the first is written is refused too
                found = self.recent[request_id] = Booked(*row)
                if len(self.recent) > self.remember:
                    self.recent.popitem(last=False)
        return found

    def _learn(self, category: str, model: str, successes: float, failures: float) -> None:
        total_s, total_f = self.stats.add(category, model, successes, failures)
        if self.store is not None:
            self.store.save_stats(category, model, total_s, total_f)

    def feedback(self, request_id: str, score: float, key_id: str | None = None) -> bool:
        found = self._lookup(request_id)
        if found is None or found.key_id != key_id or found.rated:
            return False  # unknown, a dry run, another key's request, or rated already: it moves nothing
        found.rated = True
        self._learn(found.category, found.model, score, 1.0 - score)
        if self.store is not None:
            self.store.record_feedback(request_id, score)
        return True

    def observe(self, request_id: str, model: str, outcome: Outcome, latency_s: float) -> None:
        if self.store is not None:
            self.store.record_outcome(request_id, outcome, latency_s)
        found = self.recent.get(request_id)
        if found is None:
            return
        if outcome is Outcome.OK and found.prefix is not None:  # the model that answered holds the prefix now
            self.affinity.record(found.prefix, model, self.clock())
        # a refusal is the request's fault and a cancellation the client's: the model did no wrong
        if outcome is Outcome.ENGINE_FAILURE and self.implicit_weight > 0.0:
            self._learn(found.category, model, 0.0, self.implicit_weight)


@dataclasses.dataclass(slots=True)
class Booked:
    """What feedback on a committed request needs."""

    category: str
    model: str
    key_id: str | None
    rated: bool = False  # feedback counts once per request
    prefix: int | None = None  # hash of the request's whole message list: its conversation for affinity


def _score(candidate: Candidate) -> float:
    return candidate.score if candidate.score is not None else float("-inf")
