"""The latency predictor: queueing past max_num_seqs (prompt and output work apart), the KV cache, cached prompt
prefixes, scraped gauges while fresh, GPU co-location."""

from __future__ import annotations

import pytest

from server.load import GpuLoad, LoadBoard
from server.policy.latency import OUTPUT_FILL, STALE_S, LatencyPredictor, Prediction
from tests.server.policy.policykit import busy, trio


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


# -- the wait estimate: prompt work and output work apart, the KV cache, a cached prefix --------------------------


def separate(load: LoadBoard) -> LatencyPredictor:
    """The demo trio, each engine on its own GPU (no co-location stretch)."""
    return LatencyPredictor(trio(("0", "1", "2")), load)


def coder_speed() -> tuple[float, float, float, float]:
    """(base_ttft_s, prefill_s_per_token, tpot_1_s, tpot_at_max_num_seqs_s) of the demo's coder profile."""
    p = next(m for m in trio() if m.name == "coder").profile
    assert p.peak_decode_tok_per_s is not None
    return 1e-3 * p.base_ttft_ms, 1 / p.prefill_tok_per_s, 1 / p.decode_tok_per_s, 256 / p.peak_decode_tok_per_s


def test_queue_wait_counts_prompt_work_as_prefill_and_output_work_as_decode() -> None:
    load = LoadBoard()
    base_s, prefill_s, _, tpot_max_s = coder_speed()
    busy(load, "coder", 400, prompt_each=4000, output_each=256)  # RAG traffic: long prompts, short answers
    queued = 400 + 1 - 256  # beyond max_num_seqs: no slot yet
    out_mean = OUTPUT_FILL * 256  # decode tokens per request ahead
    wait_s = queued * (out_mean * tpot_max_s / 256 + 4000 * prefill_s)  # slots free by decode, each then prefilled
    expected_s = base_s + 100 * prefill_s + tpot_max_s + wait_s
    assert predict(separate(load), "coder", prompt=100, out=256).ttft_s == pytest.approx(expected_s, rel=1e-9)
    # Before, prompt + output tokens were all decode work: 0.6 x 4256 tokens at tpot(B) per slot, ~2.9x the wait.
    old_wait_s = queued * OUTPUT_FILL * (4000 + 256) * tpot_max_s / 256
    assert 2.5 < old_wait_s / wait_s < 3.0


def test_longer_prompts_ahead_cost_only_their_prefill() -> None:
    short, long = LoadBoard(), LoadBoard()
    busy(short, "coder", 400, prompt_each=100, output_each=256)
    busy(long, "coder", 400, prompt_each=4100, output_each=256)
    _, prefill_s, _, _ = coder_speed()
    gap_s = predict(separate(long), "coder").ttft_s - predict(separate(short), "coder").ttft_s
    assert gap_s == pytest.approx(145 * 4000 * prefill_s, rel=1e-9)  # 145 requests ahead, 4000 more tokens each


def kv_board(usage: float, capacity: int = 240_000) -> tuple[LoadBoard, float]:
    """20 long agent contexts running on the coder, its KV cache `usage` full; (board, a time the scrape is fresh)."""
    load = LoadBoard()
    busy(load, "coder", 20, prompt_each=10_000, output_each=500)
    load.record_scrape("coder", running=20, waiting=0, kv_cache_usage=usage, kv_cache_tokens=capacity)
    return load, load.engine("coder").scraped_at_s + 0.1


def test_a_long_prompt_waits_for_a_nearly_full_kv_cache_and_a_short_one_does_not() -> None:
    base_s, prefill_s, tpot_1_s, tpot_max_s = coder_speed()
    tpot_s = tpot_1_s + 20 * (tpot_max_s - tpot_1_s) / 255  # 21 sequences in a step
    full, now = kv_board(0.97)
    free = 0.03 * 240_000
    held = 10_000 + OUTPUT_FILL * 500  # KV tokens one finishing sequence frees
    short = 16_000 + OUTPUT_FILL * 256 - free
    kv_wait_s = short / held * (OUTPUT_FILL * 500) * tpot_s / 20  # 20 running sequences finish that often
    no_wait_s = base_s + 16_000 * prefill_s + tpot_s
    assert predict(separate(full), "coder", now, prompt=16_000).ttft_s == pytest.approx(no_wait_s + kv_wait_s)
    assert predict(separate(full), "coder", now, prompt=100).ttft_s == pytest.approx(base_s + 100 * prefill_s + tpot_s)
    roomy, now = kv_board(0.5)
    assert predict(separate(roomy), "coder", now, prompt=16_000).ttft_s == pytest.approx(no_wait_s)


def test_kv_cache_is_ignored_without_a_capacity_or_a_fresh_scrape() -> None:
    base_s, prefill_s, tpot_1_s, tpot_max_s = coder_speed()
    no_wait_s = base_s + 16_000 * prefill_s + tpot_1_s + 20 * (tpot_max_s - tpot_1_s) / 255
    unknown, now = kv_board(0.99, capacity=0)  # an engine that does not publish vllm:cache_config_info
    assert predict(separate(unknown), "coder", now, prompt=16_000).ttft_s == pytest.approx(no_wait_s)
    full, now = kv_board(0.99)
    assert predict(separate(full), "coder", now + STALE_S + 1, prompt=16_000).ttft_s == pytest.approx(no_wait_s)


def test_a_cached_prefix_is_not_prefilled_again() -> None:
    p = separate(LoadBoard())
    _, prefill_s, _, _ = coder_speed()
    snap = p.snapshot(100.0)
    cold = p.predict(0, snap, 100.0, 4000, 256)
    warm = p.predict(0, snap, 100.0, 4000, 256, cached_tokens=3000)
    assert cold.ttft_s - warm.ttft_s == pytest.approx(3000 * prefill_s, rel=1e-9)
    everything = p.predict(0, snap, 100.0, 4000, 256, cached_tokens=9000)  # more than the prompt: no prefill left
    assert cold.ttft_s - everything.ttft_s == pytest.approx(4000 * prefill_s, rel=1e-9)
