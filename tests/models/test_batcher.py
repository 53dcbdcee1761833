"""MicroBatcher with a fake classifier: batching, error propagation, lifecycle and back-pressure."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from models.batcher import BatcherConfig, MicroBatcher
from models.classifier import ClassifierOutput
from models.errors import BatcherClosedError, BatcherOverloadedError

LABELS = ["code", "math"]


class FakeClassifier:
    """Deterministic: 'code' if the text mentions python, else 'math'; records batch sizes and threads."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.delay_s, self.fail_on = delay_s, fail_on
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()

    def classify_batch(self, texts: list[str]) -> ClassifierOutput:
        self.threads.add(threading.current_thread().name)
        self.batch_sizes.append(len(texts))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise ValueError(f"cannot classify {self.fail_on!r}")
        is_code = np.array([("python" in t) for t in texts], dtype=np.float32)
        probs = np.stack([0.1 + 0.8 * is_code, 0.9 - 0.8 * is_code], axis=1)
        emb = np.zeros((len(texts), 384), dtype=np.float32)
        emb[:, 0] = [len(t) for t in texts]
        return ClassifierOutput(
            labels=LABELS, probs=probs, complexity=np.full(len(texts), 0.5, np.float32), embedding=emb
        )


async def test_concurrent_requests_are_batched() -> None:
    fake = FakeClassifier(delay_s=0.01)
    async with MicroBatcher(fake, BatcherConfig(max_batch=32, max_wait_ms=5.0)) as batcher:
        texts = [f"python task {i}" if i % 2 else f"sum {i}" for i in range(100)]
        results = await asyncio.gather(*(batcher.classify(t) for t in texts))
    assert sum(fake.batch_sizes) == 100
    assert len(fake.batch_sizes) <= 6, fake.batch_sizes  # 100 concurrent calls -> a handful of batches
    assert max(fake.batch_sizes) <= 32
    for t, r in zip(texts, results, strict=True):
        assert r.category == ("code" if "python" in t else "math")
        assert r.category_scores.keys() == set(LABELS)
        assert abs(sum(r.category_scores.values()) - 1.0) < 1e-6
        assert r.complexity == 0.5 and r.embedding.shape == (384,) and r.embedding[0] == len(t)
    assert fake.threads and all(name.startswith("triage-classifier") for name in fake.threads)


async def test_single_request_waits_at_most_the_window() -> None:
    fake = FakeClassifier()
    async with MicroBatcher(fake, BatcherConfig(max_batch=64, max_wait_ms=1.0)) as batcher:
        t0 = time.perf_counter()
        r = await batcher.classify("python hello")
        assert time.perf_counter() - t0 < 0.5
    assert r.category == "code" and fake.batch_sizes == [1]


async def test_event_loop_is_not_blocked_while_a_batch_runs() -> None:
    fake = FakeClassifier(delay_s=0.2)
    async with MicroBatcher(fake) as batcher:
        task = asyncio.create_task(batcher.classify("slow"))
        ticks = 0
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await task
    assert ticks >= 5  # the loop kept running during the 200 ms classify_batch


async def test_errors_propagate_to_every_waiter_of_the_batch_and_batcher_survives() -> None:
    fake = FakeClassifier(delay_s=0.02, fail_on="boom")
    async with MicroBatcher(fake, BatcherConfig(max_batch=8, max_wait_ms=20.0)) as batcher:
        results = await asyncio.gather(*(batcher.classify(t) for t in ["a", "boom", "b"]), return_exceptions=True)
        assert all(isinstance(r, ValueError) and "boom" in str(r) for r in results)
        ok = await batcher.classify("python after the failure")
        assert ok.category == "code"


async def test_classify_before_start_raises() -> None:
    batcher = MicroBatcher(FakeClassifier())
    with pytest.raises(BatcherClosedError, match="start"):
        await batcher.classify("x")


async def test_bounded_queue_raises_when_full() -> None:
    fake = FakeClassifier(delay_s=0.1)
    async with MicroBatcher(fake, BatcherConfig(max_batch=1, max_wait_ms=0.0, max_queue=2)) as batcher:
        tasks = [asyncio.create_task(batcher.classify(f"t{i}")) for i in range(6)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(r, BatcherOverloadedError) for r in results)
    assert any(not isinstance(r, BaseException) for r in results)


async def test_stop_fails_queued_and_in_flight_requests() -> None:
    fake = FakeClassifier(delay_s=0.2)
    batcher = MicroBatcher(fake, BatcherConfig(max_batch=1, max_wait_ms=0.0))
    await batcher.start()
    tasks = [asyncio.create_task(batcher.classify(f"t{i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    await batcher.stop()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, BatcherClosedError) for r in results)
    assert not batcher.running
