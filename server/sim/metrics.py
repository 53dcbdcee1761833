"""`/metrics` of a simulated engine: vLLM v1 metric names and labels, rendered by prometheus_client.

A custom collector reads the engine's gauges and `EngineStats` at scrape time, so the hot path never touches
prometheus_client locks. Names and labels follow vLLM's `v1/metrics/loggers.py` (vLLM >= 0.10):
labels `model_name` and `engine` ("0"); `vllm:kv_cache_usage_perc` (older releases: gpu_cache_usage_perc);
counters get the `_total` suffix from the client. Knows nothing about HTTP or scheduling.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from server.sim.stats import FINISH_REASONS, Histo

if TYPE_CHECKING:
    from server.sim.engine import SimEngine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ["model_name", "engine"]
CACHE_LABELS = ["block_size", "num_gpu_blocks"]
BLOCK_SIZE = 16  # tokens per KV block: vLLM's default on CUDA


class EngineCollector(Collector):
    """Yields the vLLM metric families of one engine."""

    def __init__(self, engine: SimEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        eng = self._engine
        values = [eng.name, "0"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=LABELS)
            g.add_metric(values, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=LABELS)
            c.add_metric(values, value)
            return c

        def histogram(name: str, doc: str, h: Histo) -> HistogramMetricFamily:
            fam = HistogramMetricFamily(name, doc, labels=LABELS)
            fam.add_metric(values, h.cumulative(), h.sum)
            return fam

        st = eng.stats
        yield gauge("vllm:num_requests_running", "Number of requests in model execution batches.", eng.num_running)
        yield gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", eng.num_waiting)
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", eng.kv_cache_usage)
        # vLLM's CacheConfig as an info gauge (there every field is a label; here the two that size the cache)
        info = GaugeMetricFamily(
            "vllm:cache_config_info", "Information of the LLMEngine CacheConfig", labels=[*LABELS, *CACHE_LABELS]
        )
        info.add_metric([*values, str(BLOCK_SIZE), str(eng.kv_cache_tokens // BLOCK_SIZE)], 1.0)
        yield info
        yield counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", st.preemptions_total)
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", st.prompt_tokens_total)
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", st.generation_tokens_total)
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*LABELS, "finished_reason"],
        )
        for reason in FINISH_REASONS:
            success.add_metric([*values, reason], st.request_success_total[reason])
        yield success
        yield histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", st.ttft_s)
        yield histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", st.itl_s)
        # Deprecated twin of the ITL histogram in vLLM; kept because dashboards still read it.
        yield histogram(
            "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", st.itl_s
        )
        yield histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", st.e2e_s)
        yield histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            st.queue_s,
        )


def make_registry(engine: SimEngine) -> CollectorRegistry:
    """A registry of its own per engine (never the global one), holding only its collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition format 0.0.4."""
    return generate_latest(registry)
