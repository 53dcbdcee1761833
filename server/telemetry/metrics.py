"""Every Prometheus metric the router exports, in one place (served at `GET /metrics`).

`_seconds` histograms and `_total` counters with small fixed label sets. Ratios are left to PromQL, e.g.
router share of latency: rate(triage_router_overhead_seconds_sum[5m]) / rate(triage_request_seconds_sum[5m]);
free GPU memory: triage_gpu_memory_total_bytes - triage_gpu_memory_used_bytes.
Each app gets its own registry so several can live in one process (tests).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r)

        self.requests = counter(
            "triage_requests",
            "Generation requests answered, by endpoint, model, status.",
            ("endpoint", "model", "status"),
        )
        self.request_seconds = histogram(
            "triage_request_seconds",
            "End-to-end time of generation requests as the router saw it.",
            ("endpoint", "model"),
            _LATENCY_BUCKETS_S,
        )
        self.ttft_seconds = histogram(
            "triage_time_to_first_token_seconds",
            "Time from request receipt to the first streamed event relayed.",
            ("model",),
            _LATENCY_BUCKETS_S,
        )
        self.overhead_seconds = histogram(
            "triage_router_overhead_seconds",
            "Time the router itself added (parse, classify, decide, relay).",
            (),
            _OVERHEAD_BUCKETS_S,
        )
        self.classify_seconds = histogram(
            "triage_classify_seconds", "Time to classify one prompt.", (), _OVERHEAD_BUCKETS_S
        )
        self.in_flight = gauge("triage_in_flight_requests", "Requests the router has open to each model.", ("model",))
        self.decisions = counter(
            "triage_decisions", "Routing decisions by category and chosen model.", ("category", "model")
        )
        self.dry_runs = counter(
            "triage_dry_runs", "POST /v1/route decisions explained (they run nothing and change nothing).", ()
        )
        self.errors = counter("triage_errors", "Errors returned to clients, by type.", ("type",))
        self.engine_healthy = gauge("triage_engine_healthy", "1 when the model's engine passes its checks.", ("model",))
        self.engine_waiting = gauge(
            "triage_engine_waiting_requests", "Engine queue depth at the last scrape.", ("model",)
        )
        self.engine_running = gauge(
            "triage_engine_running_requests", "Engine running sequences at the last scrape.", ("model",)
        )
        self.engine_kv_cache_usage = gauge(
            "triage_engine_kv_cache_usage_ratio",
            "Share of the engine's KV cache in use at the last scrape, in [0, 1].",
            ("model",),
        )
        self.engine_restarts = counter(
            "triage_engine_restarts", "Launched engines restarted after a crash.", ("model",)
        )
        # NVML, about once a second; `gpu` is the NVML index as a string (the config's `gpu` field).
        self.gpu_utilization = gauge(
            "triage_gpu_utilization_ratio", "Share of the last sample period a kernel ran on the GPU, [0, 1].", ("gpu",)
        )
        self.gpu_memory_used = gauge("triage_gpu_memory_used_bytes", "GPU memory in use, all processes.", ("gpu",))
        self.gpu_memory_total = gauge("triage_gpu_memory_total_bytes", "GPU memory installed.", ("gpu",))
        self.engine_gpu_memory = gauge(
            "triage_engine_gpu_memory_used_bytes",
            "GPU memory held by a launched engine's processes, found by PID.",
            ("model", "gpu"),
        )

        # Reliability and security (issue 7). Rejection share: rate(triage_admission_rejected_total[5m]) /
        # rate(triage_requests_total[5m]).
        self.breaker_state = gauge(
            "triage_breaker_state", "Circuit breaker: 0 closed, 1 open, 2 half-open.", ("model",)
        )
        self.breaker_opens = counter("triage_breaker_opens", "Times a model's circuit breaker opened.", ("model",))
        self.fallbacks = counter(
            "triage_fallbacks", "Retries on another model before the first byte, by the model that failed.", ("model",)
        )
        self.stream_errors = counter(
            "triage_stream_errors", "Streams ended with an error event after the first byte, by model.", ("model",)
        )
        self.admission_rejected = counter(
            "triage_admission_rejected", "Requests refused with 429 by admission control, by reason.", ("reason",)
        )
        self.admission_waiting = gauge("triage_admission_waiting_requests", "Requests waiting for a free slot.", ())
        self.auth_rejected = counter("triage_auth_rejected", "Requests refused by auth, by reason.", ("reason",))
        self.privacy_findings = counter(
            "triage_privacy_findings",
            "Prompts in which the privacy guard found secrets or personal data, by kind.",
            ("kind",),
        )
        self.privacy_scan_seconds = histogram(
            "triage_privacy_scan_seconds", "Time to scan one prompt.", (), _OVERHEAD_BUCKETS_S
        )
        self.usage_committed = counter(
            "triage_usage_committed_rows", "Key usage rows committed to the store (durable once counted).", ()
        )

    def child(self, metric: Counter | Gauge | Histogram, *labels: str) -> Any:
        """`metric.labels(*labels)`, memoised: the hot path skips prometheus_client's lock and lookups."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
