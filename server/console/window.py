"""Rolling counts over the last few minutes, folded from finished requests: routing share per model and per
category, overflow share, outcomes, attainment of the time-to-first-token target, and each model's recent TTFTs.

`Windows.fold()` takes what `RecentDecisions.drain_closed()` returns (the console calls it about once a second,
off the request path) and adds it to fixed-width time buckets; buckets older than the span fall off. So the
figures cover the whole span whatever the request rate, while the decisions ring only holds the latest few
hundred. Knows nothing about HTTP or where the requests came from.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .recent import Closed

SPAN_S = 300.0  # what "the last minutes" means on the console
BUCKET_S = 10.0  # one bar of the routing timeline
TTFT_WINDOW_S = 60.0  # a model's "measured TTFT" is the median over this long
TTFT_SAMPLES = 2048  # per model, newest kept
SLO_OUTCOMES = ("ok", "engine_failure")  # counted towards attainment: refusals and hang-ups are not the engine's


@dataclass(slots=True)
class Bucket:
    start_s: float  # time.monotonic() at the bucket's left edge
    by_model: Counter[str] = field(default_factory=Counter)
    by_category: Counter[tuple[str, str]] = field(default_factory=Counter)  # (category, model)
    outcomes: Counter[str] = field(default_factory=Counter)
    overflow: int = 0
    slo_met: int = 0
    slo_counted: int = 0


class Windows:
    def __init__(self, ttft_target_s: float, span_s: float = SPAN_S, bucket_s: float = BUCKET_S) -> None:
        self.ttft_target_s = ttft_target_s
        self.span_s = span_s
        self.bucket_s = bucket_s
        self.buckets: deque[Bucket] = deque()
        self.ttfts: dict[str, deque[tuple[float, float]]] = {}  # model -> (monotonic s, ttft s), oldest first
        self.missed = 0  # finished requests the console fell too far behind to count

    def fold(self, closed: list[Closed], now_s: float) -> None:
        """Count finished requests (oldest first) and drop buckets that left the span."""
        for item in closed:
            bucket = self._bucket(item.at_s)
            bucket.by_model[item.model] += 1
            bucket.by_category[item.category, item.model] += 1
            bucket.outcomes[item.outcome] += 1
            bucket.overflow += item.overflow
            if item.outcome in SLO_OUTCOMES:
                bucket.slo_counted += 1
                bucket.slo_met += item.ttft_s is not None and item.outcome == "ok" and item.ttft_s <= self.ttft_target_s
            if item.ttft_s is not None and item.outcome == "ok":
                samples = self.ttfts.get(item.model)
                if samples is None:
                    samples = self.ttfts[item.model] = deque(maxlen=TTFT_SAMPLES)
                samples.append((item.at_s, item.ttft_s))
        self._expire(now_s)

    def _bucket(self, at_s: float) -> Bucket:
        start_s = at_s - at_s % self.bucket_s
        buckets = self.buckets
        if not buckets or buckets[-1].start_s < start_s:
            buckets.append(Bucket(start_s))
        elif buckets[-1].start_s > start_s:  # out of order (should not happen: drained in close order)
            return next((b for b in buckets if b.start_s == start_s), buckets[-1])
        return buckets[-1]

    def _expire(self, now_s: float) -> None:
        while self.buckets and self.buckets[0].start_s + self.bucket_s <= now_s - self.span_s:
            self.buckets.popleft()
        for samples in self.ttfts.values():
            while samples and samples[0][0] < now_s - TTFT_WINDOW_S:
                samples.popleft()

    def ttft_p50_s(self, model: str) -> float | None:
        """Median time to first byte of `model`'s answered requests over the last minute; None without any."""
        samples = self.ttfts.get(model)
        if not samples:
            return None
        values = sorted(v for _, v in samples)
        return values[len(values) // 2]

    def view(self, now_s: float) -> dict[str, Any]:
        """Totals over the span, and per-bucket counts per model for the timeline (oldest first)."""
        by_model: Counter[str] = Counter()
        by_category: Counter[tuple[str, str]] = Counter()
        outcomes: Counter[str] = Counter()
        overflow = slo_met = slo_counted = 0
        timeline = []
        for b in self.buckets:
            by_model.update(b.by_model)
            by_category.update(b.by_category)
            outcomes.update(b.outcomes)
            overflow += b.overflow
            slo_met += b.slo_met
            slo_counted += b.slo_counted
            timeline.append({"age_s": round(now_s - b.start_s, 1), "by_model": dict(b.by_model)})
        total = sum(by_model.values())
        categories: dict[str, dict[str, int]] = {}
        for (category, model), n in sorted(by_category.items()):
            categories.setdefault(category, {})[model] = n
        return {
            "span_s": self.span_s,
            "bucket_s": self.bucket_s,
            "requests": total,
            "by_model": dict(by_model.most_common()),
            "by_category": categories,
            "outcomes": dict(outcomes),
            "overflow": overflow,
            "overflow_share": overflow / total if total else None,
            "slo": {
                "ttft_target_ms": self.ttft_target_s * 1e3,
                "met": slo_met,
                "counted": slo_counted,
                "attainment": slo_met / slo_counted if slo_counted else None,
            },
            "missed": self.missed,
            "timeline": timeline,
        }
