"""The latency model and shared-GPU contention, as arithmetic and on running engines."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from server.sim.engine import SimEngine
from server.sim.gpu import SimGPU, SimGPUError
from server.sim.latency import SHAPES, LatencyModel, LatencyModelError, steady_out_tok_per_s
from server.sim.spec import SimEngineSpec

CALIBRATED = ("qwen2.5-7b", "qwen2.5-1.5b", "qwen2.5-0.5b")
# contention_nonstreamed_mps.alone_out_tok_per_s of the H100 calibration file
ALONE_TOK_PER_S = {"qwen2.5-7b": 6698, "qwen2.5-1.5b": 9915, "qwen2.5-0.5b": 9066}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_monotone_in_prompt_and_batch(shape: str) -> None:
    m = LatencyModel.from_shape(shape)
    ttfts = [m.idle_ttft_ms(p) for p in (1, 128, 1024, 4096, 8000)]
    assert ttfts == sorted(ttfts) and ttfts[0] < ttfts[-1]
    steps = [m.decode_step_ms(b) for b in (1, 2, 16, 64, 128, 256, 512)]
    assert all(a < b for a, b in itertools.pairwise(steps))
    assert m.step_ms(64, 4096) > m.step_ms(64, 0)


def test_7b_matches_calibration_anchors() -> None:
    m = LatencyModel.from_shape("qwen2.5-7b")
    assert m.decode_step_ms(1) == pytest.approx(5.5)
    assert m.decode_step_ms(64) == pytest.approx(7.1)
    assert m.decode_step_ms(256) == pytest.approx(17.35)
    assert m.idle_ttft_ms(128) == pytest.approx(15.0, abs=0.5)


@pytest.mark.parametrize("shape", CALIBRATED)
def test_alone_throughput_near_calibration(shape: str) -> None:
    rate = steady_out_tok_per_s(LatencyModel.from_shape(shape), 64, 512, 128)
    assert rate == pytest.approx(ALONE_TOK_PER_S[shape], rel=0.10)


def test_three_engines_contention_band() -> None:
    gpu = SimGPU("h100")
    for shape in CALIBRATED:
        gpu.register(shape)
        gpu.report(shape, 64)
    for shape in CALIBRATED:
        m = LatencyModel.from_shape(shape)
        alone = steady_out_tok_per_s(m, 64, 512, 128)
        together = steady_out_tok_per_s(m, 64, 512, 128, gpu.factor(shape, m.contention_sensitivity))
        loss = 1 - together / alone
        assert 0.16 <= loss <= 0.35, (shape, loss)


def test_idle_neighbour_costs_nothing() -> None:
    gpu = SimGPU("g")
    gpu.register("a")
    gpu.register("b")
    gpu.report("a", 200)
    assert gpu.factor("b", 0.5) > 1.0
    gpu.report("a", 0)
    assert gpu.factor("b", 0.5) == 1.0
    with pytest.raises(SimGPUError):
        gpu.register("a")


def test_overrides_and_bad_shape() -> None:
    m = LatencyModel.from_shape("qwen2.5-7b", base_tpot_ms=11.0, prefill_tok_per_s=1000.0, base_ttft_ms=50.0)
    assert m.decode_step_ms(1) == pytest.approx(11.0)
    assert m.decode_step_ms(64) == pytest.approx(14.2)  # whole curve scaled 2x
    assert m.idle_ttft_ms(1000) == pytest.approx(50.0 + 1000.0)
    with pytest.raises(LatencyModelError):
        LatencyModel.from_shape("gpt-9")


async def _busy_seconds(engines: list[SimEngine], n_seqs: int, tokens: int) -> float:
    """Start all engines, put n_seqs sequences of `tokens` on each; seconds until the first engine is done."""
    for e in engines:
        e.start()
    t0 = time.perf_counter()
    seqs = [[e.submit(8, tokens, ignore_eos=True) for _ in range(n_seqs)] for e in engines]
    await asyncio.gather(*(s.wait_done() for s in seqs[0]))
    elapsed = time.perf_counter() - t0
    for e in engines:
        await e.stop()
    return elapsed


def _engine(name: str, gpu: SimGPU) -> SimEngine:
    # tiny-fast: 1.5 ms steps at batch 64 and sensitivity 0.5 -> 1.5x with a saturated neighbour
    return SimEngine(SimEngineSpec(name=name, port=0, shape="tiny-fast", gpu=gpu.gpu_id, time_scale=2.0), gpu)


async def test_contention_only_on_shared_gpu() -> None:
    n, tokens = 64, 60
    alone = await _busy_seconds([_engine("a", SimGPU("g0"))], n, tokens)
    g = SimGPU("g0")
    shared = await _busy_seconds([_engine("a", g), _engine("b", g)], n, tokens)
    apart = await _busy_seconds([_engine("a", SimGPU("g0")), _engine("b", SimGPU("g1"))], n, tokens)
    assert shared > 1.25 * alone, (alone, shared)
    assert apart < 1.15 * alone, (alone, apart)
