"""One scheduler, two clocks: `VirtualClock` itself, and `SimEngine` stepping on it as it does on asyncio's loop."""

from __future__ import annotations

import pytest

from server.sim.clock import VirtualClock, VirtualClockError
from server.sim.engine import SimEngine
from server.sim.gpu import SimGPU
from server.sim.latency import LatencyModel
from server.sim.sequence import Sequence
from server.sim.spec import SimEngineSpec


def test_callbacks_run_in_time_then_scheduling_order() -> None:
    clock = VirtualClock()
    seen: list[tuple[float, str]] = []

    def note(tag: str) -> None:
        seen.append((clock.time(), tag))
        if tag == "a":
            clock.call_later(0.5, note, "c")  # scheduled from a callback, runs in turn

    clock.call_at(1.0, note, "b")
    clock.call_at(0.5, note, "a")
    clock.call_at(1.0, note, "b2")
    clock.call_at(0.7, note, "never").cancel()
    clock.call_at(9.0, note, "late")
    assert clock.run_until(2.0, max_events=100) == 4
    assert seen == [(0.5, "a"), (1.0, "b"), (1.0, "b2"), (1.0, "c")]
    assert clock.time() == 2.0 and clock.pending == 1
    with pytest.raises(VirtualClockError):
        clock.call_at(1.5, note, "past")


def test_run_until_is_bounded() -> None:
    clock = VirtualClock()

    def forever() -> None:
        clock.call_later(0.001, forever)

    clock.call_at(0.0, forever)
    with pytest.raises(VirtualClockError):
        clock.run_until(100.0, max_events=1000)


def _engine(clock: VirtualClock, gpu: SimGPU | None = None, name: str = "e", **kw: object) -> SimEngine:
    spec = SimEngineSpec.model_validate({"name": name, "port": 0, "shape": "qwen2.5-7b", **kw})
    engine = SimEngine(spec, gpu, clock)
    engine.start()
    return engine


def test_idle_engine_times_are_the_latency_model_exactly() -> None:
    clock = VirtualClock()
    engine = _engine(clock)
    model = LatencyModel.from_shape("qwen2.5-7b")
    done: list[Sequence] = []
    seq = engine.submit(500, 64, output_tokens=10, on_finish=done.append)
    clock.run_until(10.0, max_events=1000)
    assert done == [seq] and seq.finish_reason == "stop" and seq.generated == 10
    assert seq.first_token_s == pytest.approx(model.idle_ttft_ms(500) / 1e3)
    # then one decode step per token at batch 1
    assert engine.stats.e2e_s.sum == pytest.approx((model.idle_ttft_ms(500) + 9 * model.decode_step_ms(1)) / 1e3)
    assert engine.num_running == 0 and engine.kv_cache_usage == 0.0


def test_full_engine_queues_in_fifo_order() -> None:
    clock = VirtualClock()
    engine = _engine(clock, max_num_seqs=2)
    done: list[Sequence] = []
    lengths = [5, 9, 3, 7]
    seqs = [engine.submit(16, 64, output_tokens=n, on_finish=done.append) for n in lengths]
    clock.run_until(0.01, max_events=1000)
    assert engine.num_running == 2 and engine.num_waiting == 2
    clock.run_until(10.0, max_events=10_000)
    # the 5-token reply frees a slot for the 3-token one, which ends before the 9-token one
    assert done == [seqs[0], seqs[2], seqs[1], seqs[3]]
    first = [s.first_token_s for s in seqs]
    assert first[0] == first[1] < first[2] < first[3]  # type: ignore[operator]


async def test_same_schedule_on_the_asyncio_clock() -> None:
    """The wall-clock engine runs the same scheduler: the order of completions matches the virtual clock's."""
    orders: list[list[int]] = []
    lengths = [5, 9, 3, 7, 2]
    for virtual in (True, False):
        spec = SimEngineSpec(name="e", port=0, shape="tiny-fast", max_num_seqs=2)
        clock = VirtualClock() if virtual else None
        engine = SimEngine(spec, SimGPU("g"), clock)
        engine.start()
        done: list[Sequence] = []
        seqs = [engine.submit(8, 64, output_tokens=n, on_finish=done.append) for n in lengths]
        if clock is not None:
            clock.run_until(1.0, max_events=10_000)
        else:
            for seq in seqs:
                await seq.wait_done()
        await engine.stop()
        assert [s.generated for s in seqs] == lengths
        orders.append([s.seq_id for s in done])
    assert orders[0] == orders[1]
