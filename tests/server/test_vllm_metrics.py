"""Parsing vLLM's Prometheus text into the gauges the policy reads."""

from __future__ import annotations

from server.backends.vllm import parse_vllm_metrics, root_of

SAMPLE = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 12.0
vllm:num_requests_running{engine="1",model_name="qwen"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen"} 4.0
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.42
vllm:kv_cache_usage_perc{engine="1",model_name="qwen"} 0.17
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="qwen"} 7.0
vllm:generation_tokens_total{engine="0",model_name="qwen"} 1000.0
vllm:generation_tokens_total{engine="1",model_name="qwen"} 250.0
vllm:generation_tokens_created{engine="0",model_name="qwen"} 1.7e9
"""
# vLLM's CacheConfig info gauge: every field a label (a few here; mamba_block_size and num_gpu_blocks_override
# must not be read as block_size and num_gpu_blocks)
SAMPLE += (
    b'vllm:cache_config_info{mamba_block_size="64",block_size="16",engine="0",num_gpu_blocks_override="9",'
    b'num_gpu_blocks="14876",model_name="qwen"} 1.0\n'
    b'vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="15000",model_name="qwen"} 1.0\n'
)


def test_gauges_summed_across_engine_cores() -> None:
    stats = parse_vllm_metrics(SAMPLE)
    assert (stats.running, stats.waiting) == (15, 4)
    assert abs(stats.kv_cache_usage - 0.42) < 1e-9  # the fullest core
    assert stats.kv_cache_tokens == 16 * 14876  # the smallest core: a request lands on one
    assert stats.generation_tokens == 1250.0  # a counter, summed like the queue gauges (not its _created twin)


def test_kv_capacity_unknown_before_the_engine_sized_its_cache() -> None:
    line = b'vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="None",num_gpu_blocks_override="64"} 1.0'
    assert parse_vllm_metrics(line).kv_cache_tokens == 0


def test_missing_gauges_read_zero() -> None:
    stats = parse_vllm_metrics(b"# nothing here\n")
    assert (stats.running, stats.waiting, stats.kv_cache_usage, stats.kv_cache_tokens) == (0, 0, 0.0, 0)


def test_root_of_endpoint() -> None:
    assert root_of("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000"
    assert root_of("http://h:1") == "http://h:1"
