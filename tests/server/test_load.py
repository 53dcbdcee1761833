"""The LoadBoard: prompt and output work counted apart, scraped gauges and the KV capacity."""

from __future__ import annotations

from server.load import LoadBoard


def test_started_and_finished_count_prompt_and_output_work_apart() -> None:
    load = LoadBoard()
    load.started("a", 4000, 256)  # a RAG request: long prompt, short answer
    load.started("a", 50, 1024)
    state = load.engine("a")
    assert (state.in_flight, state.in_flight_prompt_tokens, state.in_flight_output_tokens) == (2, 4050, 1280)
    load.finished("a", 4000, 256)
    load.finished("a", 50, 1024)
    assert (state.in_flight, state.in_flight_prompt_tokens, state.in_flight_output_tokens) == (0, 0, 0)


def test_a_scrape_without_the_capacity_keeps_the_one_known() -> None:
    load = LoadBoard()
    load.record_scrape("a", running=3, waiting=1, kv_cache_usage=0.5, kv_cache_tokens=240_000)
    load.record_scrape("a", running=4, waiting=0, kv_cache_usage=0.6)
    state = load.engine("a")
    assert (state.engine_running, state.engine_waiting, state.kv_cache_usage) == (4, 0, 0.6)
    assert state.kv_cache_tokens == 240_000 and state.scraped_at_s > 0
