"""Rolling windows: shares per model and category, overflow, TTFT-target attainment, buckets leaving the span."""

from __future__ import annotations

import pytest

from server.console.recent import Closed
from server.console.window import Windows


def closed(at_s: float, model: str, category: str = "code", outcome: str = "ok", ttft_s: float | None = 0.2) -> Closed:
    return Closed(at_s, model, category, model == "cloud", outcome, ttft_s)


def test_counts_shares_and_attainment() -> None:
    windows = Windows(ttft_target_s=1.0, span_s=60, bucket_s=10)
    windows.fold(
        [
            closed(100.0, "coder"),
            closed(101.0, "coder", ttft_s=1.5),  # missed the target
            closed(105.0, "chat", "math"),
            closed(112.0, "cloud", "math"),  # overflow
            closed(113.0, "chat", outcome="engine_failure", ttft_s=None),  # counts as missed
            closed(114.0, "chat", outcome="cancelled", ttft_s=None),  # the client's doing: not counted
        ],
        now_s=115.0,
    )
    view = windows.view(now_s=115.0)
    assert view["requests"] == 6
    assert view["by_model"] == {"chat": 3, "coder": 2, "cloud": 1}
    assert view["by_category"] == {"code": {"chat": 2, "coder": 2}, "math": {"chat": 1, "cloud": 1}}
    assert view["overflow"] == 1 and view["overflow_share"] == pytest.approx(1 / 6)
    assert (view["slo"]["met"], view["slo"]["counted"]) == (3, 5)
    assert view["outcomes"] == {"ok": 4, "engine_failure": 1, "cancelled": 1}
    assert [b["age_s"] for b in view["timeline"]] == [15.0, 5.0]
    assert windows.ttft_p50_s("coder") == pytest.approx(1.5)  # of [0.2, 1.5]: the upper median
    assert windows.ttft_p50_s("fast") is None


def test_old_buckets_and_samples_leave_the_span() -> None:
    windows = Windows(ttft_target_s=1.0, span_s=60, bucket_s=10)
    windows.fold([closed(0.0, "coder"), closed(65.0, "chat")], now_s=65.0)
    assert windows.view(65.0)["by_model"] == {"coder": 1, "chat": 1}
    windows.fold([], now_s=75.0)  # the bucket [0, 10) ended more than 60 s ago
    assert windows.view(75.0)["by_model"] == {"chat": 1}
    assert windows.ttft_p50_s("coder") is None and windows.ttft_p50_s("chat") == pytest.approx(0.2)
    assert windows.view(75.0)["slo"]["attainment"] == 1.0
