"""MicroBatcher: many concurrent `await classify(text)` calls -> few `classify_batch(texts)` calls.

Requests wait in a bounded asyncio queue. A collector task takes the first request, then keeps taking
requests until `max_batch` is reached or `max_wait_ms` has passed, and runs the batch in a single worker
thread (`run_in_executor`), so the event loop never blocks on tokenization or the encoder. While a batch runs,
new requests queue up and form the next batch, so batches grow with load. Length bucketing happens inside the
classifier's encoder. An exception from `classify_batch` is set on every waiter of that batch.
This module knows nothing about models, tokenizers or HTTP: any object with `classify_batch` works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np

from models.classifier import ClassifierOutput
from models.errors import BatcherClosedError, BatcherOverloadedError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatcherConfig:
    max_batch: int = 64  # texts per classify_batch call
    max_wait_ms: float = 1.0  # how long the first request of a batch waits for company
    max_queue: int = 4096  # pending requests before classify() raises BatcherOverloadedError


@dataclass
class ClassifiedPrompt:
    category: str  # argmax category
    category_scores: dict[str, float]  # category -> probability, sums to 1
    complexity: float  # [0, 1], see labels.json "complexity_meaning"
    embedding: np.ndarray  # [384] float32, unit norm


class BatchClassifier(Protocol):
    def classify_batch(self, texts: list[str]) -> ClassifierOutput: ...


@dataclass
class _Pending:
    text: str
    future: asyncio.Future[ClassifiedPrompt]


def split_output(out: ClassifierOutput) -> list[ClassifiedPrompt]:
    """One ClassifiedPrompt per row of a batch output."""
    top = out.probs.argmax(axis=1)
    return [
        ClassifiedPrompt(
            category=out.labels[int(top[i])],
            category_scores={c: float(p) for c, p in zip(out.labels, out.probs[i], strict=True)},
            complexity=float(out.complexity[i]),
            embedding=out.embedding[i],
        )
        for i in range(len(top))
    ]


class MicroBatcher:
    """Lifecycle: `await start()` ... `await classify(text)` ... `await stop()` (or `async with`)."""

    def __init__(self, classifier: BatchClassifier, config: BatcherConfig | None = None) -> None:
        self.classifier = classifier
        self.config = config or BatcherConfig()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # classify_batch calls made
        self.items = 0  # texts classified

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._queue = asyncio.Queue(maxsize=self.config.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triage-classifier")
        self._task = asyncio.create_task(self._collect(self._queue), name="triage-microbatcher")

    async def stop(self) -> None:
        """Stop collecting; requests still queued or in flight fail with BatcherClosedError."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue is not None:
            while not self._queue.empty():
                self._fail([self._queue.get_nowait()], BatcherClosedError("MicroBatcher stopped."))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> MicroBatcher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def classify(self, text: str) -> ClassifiedPrompt:
        """Classify one prompt, batched with whatever else arrives within the window."""
        if not self.running or self._queue is None:
            raise BatcherClosedError("MicroBatcher is not running; call `await batcher.start()` first.")
        future: asyncio.Future[ClassifiedPrompt] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(text, future))
        except asyncio.QueueFull as e:
            raise BatcherOverloadedError(
                f"{self.config.max_queue} prompts already waiting for the classifier; retry later or raise "
                "BatcherConfig.max_queue."
            ) from e
        return await future

    async def _next_batch(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.max_wait_ms / 1e3
        while len(batch) < self.config.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining_s))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]  # drop callers that gave up

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch(queue)
            if not batch:
                continue
            try:
                out = await loop.run_in_executor(
                    self._executor, self.classifier.classify_batch, [p.text for p in batch]
                )
                results = split_output(out)
                if len(results) != len(batch):
                    raise RuntimeError(f"classify_batch returned {len(results)} rows for {len(batch)} texts.")
            except asyncio.CancelledError:
                self._fail(batch, BatcherClosedError("MicroBatcher stopped while this batch was running."))
                raise
            except Exception as e:  # every waiter sees the classifier's own error
                logger.warning("classify_batch failed for %d prompts: %s: %s", len(batch), type(e).__name__, e)
                self._fail(batch, e)
                continue
            self.batches += 1
            self.items += len(batch)
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(error)
