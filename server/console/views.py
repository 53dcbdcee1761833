"""JSON-ready views of what the router keeps, for the console: engines, GPUs, and recorded decisions.

Pure functions over the live objects (`LoadBoard`, the circuit breakers, NVML readings, `Recorded` entries), run
only when a console client asks; they copy numbers out and never change anything. Units are in the keys (`_ms`,
`_s`, `_bytes`, shares in [0, 1]). Knows nothing about HTTP or how the page draws them.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..health import Breakers
from ..load import LoadBoard
from .recent import Recorded
from .window import Windows

STALE_SCRAPE_S = 5.0  # engine gauges older than this are shown as stale


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 1)


def engine_views(
    models: list[ModelConfig], load: LoadBoard, breakers: Breakers, windows: Windows, now_s: float
) -> list[dict[str, Any]]:
    """One row per configured model: health, breaker, router and engine load, measured speed."""
    rows = []
    for model in models:
        state = load.engine(model.name)
        breaker = breakers.breakers.get(model.name)
        breaker_state = breaker.state.name.lower().replace("_", "-") if breaker is not None else "closed"
        retry_in_s = max(0.0, state.breaker_open_until_s - now_s) if breaker_state != "closed" else 0.0
        scraped_age_s = now_s - state.scraped_at_s if state.scraped_at_s else None
        rows.append(
            {
                "model": model.name,
                "kind": model.kind,
                "remote": model.remote,
                "gpus": [] if model.remote else model.gpu_ids,
                "healthy": state.healthy and breaker_state == "closed",
                "unhealthy_reason": state.unhealthy_reason if not state.healthy else "",
                "breaker": breaker_state,
                "breaker_retry_in_s": round(retry_in_s, 1),
                "in_flight": state.in_flight,
                "max_in_flight": model.max_in_flight,
                "running": state.engine_running,
                "waiting": state.engine_waiting,
                "kv_cache_usage": round(state.kv_cache_usage, 4),
                "scraped_age_s": None if scraped_age_s is None else round(scraped_age_s, 1),
                # an engine failing its health check is not scraped: its last gauges no longer say anything
                "stale": not state.healthy or scraped_age_s is None or scraped_age_s > STALE_SCRAPE_S,
                "ttft_p50_ms": _ms(windows.ttft_p50_s(model.name)),
                "tokens_per_s": round(state.generation_tok_per_s, 1),
            }
        )
    return rows


def gpu_views(models: list[ModelConfig], load: LoadBoard, engines_on_gpu: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One row per GPU NVML reads (utilisation, memory) or the config names, with the engines that share it.

    Without NVML (a CPU machine) the rows come from the config's `gpu` fields alone and carry no readings.
    """
    sharing: dict[str, set[str]] = {gpu: set(names) for gpu, names in engines_on_gpu.items()}
    for model in models:
        if not model.remote:
            for gpu in model.gpu_ids:
                sharing.setdefault(gpu, set()).add(model.name)
    rows = []
    for gpu in sorted(sharing.keys() | load.gpus.keys(), key=lambda g: (len(g), g)):
        reading = load.gpus.get(gpu)
        rows.append(
            {
                "gpu": gpu,
                "engines": sorted(sharing.get(gpu, ())),
                "measured": reading is not None,
                "utilization": None if reading is None else round(reading.utilization, 3),
                "memory_used_bytes": None if reading is None else reading.memory_used_bytes,
                "memory_total_bytes": None if reading is None else reading.memory_total_bytes,
            }
        )
    return rows


def decision_summary(entry: Recorded) -> dict[str, Any]:
    """A row of the live table."""
    return {
        "seq": entry.seq,
        "request_id": entry.request_id,
        "ts": round(entry.ts, 3),
        "endpoint": entry.endpoint,
        "stream": entry.stream,
        "category": entry.category,
        "complexity": round(entry.complexity, 3),
        "planned": entry.planned,
        "model": entry.model or entry.planned,
        "reason": entry.reason,
        "overflow": entry.overflow,
        "explored": entry.explored,
        "private": entry.private,
        "status": entry.outcome or "in flight",
        "ttft_ms": _ms(entry.ttft_s),
        "latency_ms": _ms(entry.latency_s),
        "feedback": entry.feedback,
    }


def decision_detail(entry: Recorded) -> dict[str, Any]:
    """A row of the table plus every candidate the policy weighed, with its terms (or why it was ruled out)."""
    decision = entry.decision
    candidates = [c.as_dict() for c in decision.candidates] if decision is not None else []
    return {
        **decision_summary(entry),
        "key_id": entry.key_id,
        "preset": decision.preset if decision is not None else "",
        "fallbacks": list(decision.fallbacks) if decision is not None else [],
        "candidates": candidates,
    }
