"""The latency predictor: queueing past max_num_seqs, scraped gauges while fresh, GPU co-location."""

from __future__ import annotations

from server.load import GpuLoad, LoadBoard
from server.policy.latency import STALE_S, LatencyPredictor, Prediction
from tests.policy.policykit import busy, trio


def predict(p: LatencyPredictor, model: str, now_s: float = 100.0, prompt: int = 100, out: int = 256) -> Prediction:
    i = p.names.index(model)
    return p.predict(i, p.snapshot(now_s), now_s, prompt, out)


def test_idle_prediction_matches_the_profile() -> None:
    p = LatencyPredictor(trio(), LoadBoard())
    ttft_s, total_s, neighbour_s = predict(p, "coder")
    assert 0.013 < ttft_s < 0.03  # 13.4 ms base + 100 / 80k s prefill + one 5.5 ms step
    assert total_s > ttft_s and neighbour_s == 0.0


def test_queue_beyond_max_num_seqs_grows_ttft() -> None:
    load = LoadBoard()
    p = LatencyPredictor(trio(("0", "1", "2")), load)
    busy(load, "coder", 200)
    below = predict(p, "coder")[0]
    busy(load, "coder", 400)
    above = predict(p, "coder")[0]
    assert below < 0.1 < 1.0 < above


def test_scraped_waiting_counts_only_while_fresh() -> None:
    load = LoadBoard()
    p = LatencyPredictor(trio(("0", "1", "2")), load)
    load.record_scrape("chat", running=256, waiting=100, kv_cache_usage=0.9)
    scraped_at = load.engine("chat").scraped_at_s
    fresh = predict(p, "chat", now_s=scraped_at + 0.5)[0]
    stale = predict(p, "chat", now_s=scraped_at + STALE_S + 1)[0]
    assert fresh > 1.0 > stale


def test_idle_neighbour_on_a_busy_gpu_is_cheaper_than_it_looks_but_not_free() -> None:
    shared_load, separate_load = LoadBoard(), LoadBoard()
    shared = LatencyPredictor(trio(("0", "0", "0")), shared_load)
    separate = LatencyPredictor(trio(("0", "1", "2")), separate_load)
    for load in (shared_load, separate_load):
        busy(load, "coder", 128)
        busy(load, "chat", 128)
    alone = predict(separate, "fast")
    colocated = predict(shared, "fast")
    assert alone.neighbour_s == 0.0
    assert colocated.ttft_s > alone.ttft_s and colocated.total_s > alone.total_s * 1.4  # both neighbours saturated
    assert colocated.neighbour_s > 0.0  # and it slows them down while it runs
    assert colocated.total_s < predict(shared, "coder").total_s  # still better than queueing behind them


def test_nvml_utilisation_counts_foreign_load() -> None:
    load = LoadBoard()
    p = LatencyPredictor(trio(("0", "1", "2")), load)
    quiet = predict(p, "fast", now_s=10.0)
    load.gpus["2"] = GpuLoad(utilization=1.0, read_at_s=9.5)  # another process keeps the GPU busy
    assert predict(p, "fast", now_s=10.0).total_s > quiet.total_s
    assert predict(p, "fast", now_s=10.0 + STALE_S + 1).total_s == quiet.total_s
