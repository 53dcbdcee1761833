"""`SimEngine`: continuous batching of simulated sequences on a shared simulated GPU, on any clock.

The scheduler lives here once. Each step: admit waiting requests (FIFO, at most `max_num_seqs` running, KV
cache permitting), give prompt chunks to prefilling sequences within the step's token budget, take the step
time from `latency.py` (times the GPU's contention factor from `gpu.py`, the slowdown fault and time_scale),
then hand one token to every sequence in the step and wake their consumers. The clock drives it (`clock.py`):
the running asyncio loop for the served simulator (wall time), a `VirtualClock` for discrete-event benchmarks
(virtual time); the engine only schedules callbacks on it. Knows nothing about HTTP, JSON or the text of
tokens.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from server.sim.clock import Clock, Timer
from server.sim.gpu import SimGPU
from server.sim.latency import SHAPES, LatencyModel
from server.sim.sequence import SeqState, Sequence
from server.sim.spec import FaultSpec, SimEngineSpec
from server.sim.stats import EngineStats

log = logging.getLogger(__name__)

# If the clock fires this far behind a step's deadline (a busy CPU), the engine stops trying to catch up.
MAX_LAG_S = 0.05


class EngineError(Exception):
    """Base of the engine's typed errors."""


class RequestTooLongError(EngineError):
    """Prompt plus requested output exceed max_model_len (vLLM answers 400)."""


class EngineStoppedError(EngineError):
    """The engine is stopped (or not started) and takes no requests."""


class SimEngine:
    """Scheduler of one simulated engine. `clock=None`: the running asyncio loop, bound by `start()`."""

    def __init__(self, spec: SimEngineSpec, gpu: SimGPU | None = None, clock: Clock | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.faults: FaultSpec = spec.faults
        self.model = LatencyModel.from_shape(
            spec.shape,
            prefill_tok_per_s=spec.prefill_tok_per_s,
            base_tpot_ms=spec.base_tpot_ms,
            base_ttft_ms=spec.base_ttft_ms,
        )
        self.kv_cache_tokens = spec.kv_cache_tokens or SHAPES[spec.shape].kv_cache_tokens
        self.gpu = gpu or SimGPU(spec.gpu)
        self.stats = EngineStats()
        self.clock: Clock | None = clock
        self._rng = random.Random(spec.seed)
        self._next_id = 0
        self._waiting: dict[int, Sequence] = {}  # FIFO by insertion order
        self._prefilling: dict[int, Sequence] = {}  # admitted, prompt not fully processed
        self._decoding: dict[int, Sequence] = {}  # first token out; one token per step
        self._frontend: dict[int, Sequence] = {}  # in the API-server delay
        self._kv_used = 0  # tokens held by running sequences: prompt + generated
        self._step: Timer | None = None  # the end of the step in progress; None while idle
        self._deadline_s = float("-inf")  # clock time at which the step in progress ends; -inf while idle
        self._started = False
        self._stopped = False
        self._watchers: list[asyncio.Future[None]] = []  # `changed()` waiters, woken on any state change

    # ---- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Register on the GPU and take requests; without a clock, call from inside the event loop."""
        if self._started:
            return
        if self.clock is None:
            self.clock = asyncio.get_running_loop()
        self.gpu.register(self.name)
        self._started = True

    async def stop(self) -> None:
        """Abort every sequence (their consumers wake with finish_reason 'abort') and stop stepping."""
        self.close()

    def close(self) -> None:
        """`stop()` for callers without an event loop (virtual-time benchmarks)."""
        self._stopped = True
        for group in (self._frontend, self._waiting, self._prefilling, self._decoding):
            for seq in list(group.values()):
                self._remove(seq, "abort")
        if self._step is not None:
            self._step.cancel()
            self._step = None
        if self._started:
            self.gpu.unregister(self.name)
            self._started = False

    def _now(self) -> float:
        if self.clock is None or not self._started:
            raise EngineStoppedError(f"engine '{self.name}' is not started; call start() first")
        return self.clock.time()

    # ---- requests --------------------------------------------------------------------------------------

    def submit(
        self,
        prompt_tokens: int,
        max_tokens: int | None = None,
        ignore_eos: bool = False,
        *,
        output_tokens: int | None = None,
        on_finish: Callable[[Sequence], None] | None = None,
    ) -> Sequence:
        """Queue a request and return its handle.

        The reply is `max_tokens` long with ignore_eos, `output_tokens` long when the caller decides (a
        benchmark replaying a workload; cut at max_tokens), else a draw around the spec's default.
        `on_finish(seq)` runs once when the sequence ends (completed, cancelled or aborted).
        """
        if self._stopped:
            raise EngineStoppedError(f"engine '{self.name}' is stopped")
        now_s = self._now()
        prompt_tokens = max(1, prompt_tokens)
        room = self.spec.max_model_len - prompt_tokens
        if max_tokens is None:
            max_tokens = room
        if room < 1 or max_tokens > room:
            raise RequestTooLongError(
                f"This model's maximum context length is {self.spec.max_model_len} tokens. However, you "
                f"requested {prompt_tokens + max(max_tokens, 0)} tokens ({prompt_tokens} in the messages, "
                f"{max(max_tokens, 0)} in the completion). Please reduce the length of the messages or "
                "completion."
            )
        if ignore_eos:
            target = max_tokens
        elif output_tokens is not None:
            target = max(1, min(max_tokens, output_tokens))
        else:
            draw = round(self.spec.default_output_tokens * self._rng.uniform(0.5, 1.5))
            target = max(1, min(max_tokens, draw))
        self._next_id += 1
        seq = Sequence(self._next_id, prompt_tokens, max_tokens, target, now_s, self._cancel, on_finish)
        delay_s = self.model.frontend_ms * self.spec.time_scale / 1000.0
        if delay_s > 0:
            self._frontend[seq.seq_id] = seq
            seq._timer = self._clock().call_later(delay_s, self._enqueue, seq)
        else:
            self._enqueue(seq)
        return seq

    def _clock(self) -> Clock:
        if self.clock is None:
            raise EngineStoppedError(f"engine '{self.name}' is not started; call start() first")
        return self.clock

    def _enqueue(self, seq: Sequence) -> None:
        self._frontend.pop(seq.seq_id, None)
        seq._timer = None
        seq.state = SeqState.WAITING
        self._waiting[seq.seq_id] = seq
        self._changed()
        if self._step is None:  # idle: plan a step once everything due at this instant has arrived
            clock = self._clock()
            self._step = clock.call_at(clock.time(), self._start_step)

    def _cancel(self, seq: Sequence) -> None:
        self._remove(seq, "abort")

    def _remove(self, seq: Sequence, reason: str) -> None:
        """Take `seq` out of whatever set holds it, free its KV, mark it finished and wake its consumer."""
        if seq.state is SeqState.FINISHED:
            return
        if seq._timer is not None:
            seq._timer.cancel()
            seq._timer = None
        self._frontend.pop(seq.seq_id, None)
        self._waiting.pop(seq.seq_id, None)
        if seq.state is SeqState.RUNNING:
            self._prefilling.pop(seq.seq_id, None)
            self._decoding.pop(seq.seq_id, None)
            self._kv_used -= seq.prompt_tokens + seq.generated
        seq.state = SeqState.FINISHED
        seq.finish_reason = reason
        self.stats.request_success_total[reason] += 1
        if reason != "abort" and self.clock is not None:
            self.stats.e2e_s.observe(self.clock.time() - seq.arrival_s)
        seq.wake()
        self._changed()
        if seq.on_finish is not None:
            seq.on_finish(seq)

    # ---- the step loop ---------------------------------------------------------------------------------

    def _start_step(self) -> None:
        """Plan one step and schedule its end on the clock; report idle when nothing is left to run."""
        clock = self._clock()
        start_s = clock.time()
        self._admit(start_s)
        if not (self._prefilling or self._decoding):
            self.gpu.report(self.name, 0)
            self._step = None
            self._deadline_s = float("-inf")  # idle: the next step starts its own cadence
            return
        decoding = list(self._decoding.values())  # each gets a token at the end of the step
        prefill_tokens, first = self._plan_prefill(len(decoding))
        self.gpu.report(self.name, len(self._prefilling) + len(self._decoding))
        factor = self.gpu.factor(self.name, self.model.contention_sensitivity)
        step_ms = self.model.step_ms(len(decoding) + len(first), prefill_tokens)
        # Back-to-back steps keep their own cadence: the next one ends a step time after the last deadline,
        # unless the clock fell behind by more than MAX_LAG_S (then it restarts from now).
        previous_s = self._deadline_s if self._deadline_s >= start_s - MAX_LAG_S else start_s
        self._deadline_s = previous_s + step_ms * factor * self.faults.slowdown * self.spec.time_scale / 1000.0
        self._step = clock.call_at(max(start_s, self._deadline_s), self._end_step, start_s, decoding, first)

    def _end_step(self, start_s: float, decoding: list[Sequence], first: list[Sequence]) -> None:
        now_s = self._clock().time()
        self._step = None
        self._emit(decoding, first, now_s, now_s - start_s)
        if not self._stopped:
            self._start_step()

    def _admit(self, now_s: float) -> None:
        """Move waiting sequences to running in FIFO order while capacity and KV cache allow."""
        cap = self.spec.max_num_seqs
        admitted = False
        while self._waiting and len(self._prefilling) + len(self._decoding) < cap:
            seq = next(iter(self._waiting.values()))
            if self._kv_used + seq.prompt_tokens > self.kv_cache_tokens and (self._prefilling or self._decoding):
                break  # head of line waits for KV blocks, as vLLM's scheduler does
            del self._waiting[seq.seq_id]
            seq.state = SeqState.RUNNING
            seq.admitted_s = now_s
            self._kv_used += seq.prompt_tokens
            self._prefilling[seq.seq_id] = seq
            self.stats.queue_s.observe(now_s - seq.arrival_s)
            admitted = True
        if admitted:
            self._changed()

    def _plan_prefill(self, n_decoding: int) -> tuple[int, list[Sequence]]:
        """Give prompt chunks within the step's token budget; return (tokens, sequences finishing prefill)."""
        budget = max(0, self.spec.max_num_batched_tokens - n_decoding)
        tokens = 0
        first: list[Sequence] = []
        for seq in self._prefilling.values():
            if budget <= 0:
                break
            chunk = min(seq.prefill_left, budget)
            seq.prefill_left -= chunk
            budget -= chunk
            tokens += chunk
            if seq.prefill_left == 0:
                first.append(seq)
        return tokens, first

    def _emit(self, decoding: list[Sequence], first: list[Sequence], now_s: float, step_s: float) -> None:
        """End of a step: one token to each sequence in it; finish those at their length; wake consumers."""
        produced = 0
        for seq in decoding:
            if seq.state is not SeqState.RUNNING:
                continue  # cancelled during the step
            seq.generated += 1
            produced += 1
            self._kv_used += 1
            if seq.generated >= seq.target_tokens:
                self._remove(seq, "length" if seq.target_tokens >= seq.max_tokens else "stop")
            else:
                seq.progress()
        if produced:
            self.stats.itl_s.observe(step_s, produced)
        for seq in first:
            if seq.state is not SeqState.RUNNING:
                continue
            del self._prefilling[seq.seq_id]
            self.stats.prompt_tokens_total += seq.prompt_tokens
            self.stats.ttft_s.observe(now_s - seq.arrival_s)
            seq.first_token_s = now_s
            seq.generated = 1
            produced += 1
            self._kv_used += 1
            if seq.target_tokens <= 1:
                self._remove(seq, "length" if seq.target_tokens >= seq.max_tokens else "stop")
            else:
                self._decoding[seq.seq_id] = seq
                seq.progress()
        self.stats.generation_tokens_total += produced

    # ---- state changes, for tests and tools ----------------------------------------------------------

    def _changed(self) -> None:
        if not self._watchers:
            return
        watchers, self._watchers = self._watchers, []
        for waiter in watchers:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_until(self, predicate: Callable[[SimEngine], bool], timeout_s: float) -> None:
        """Return once `predicate(self)` holds, re-checked on every queue change; TimeoutError after timeout_s.

        Asyncio clock only. Waits on the engine's own state changes (arrival, admission, finish, abort),
        not on a polling interval.
        """
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._watchers.append(waiter)
                await waiter

    # ---- live gauges -----------------------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        return len(self._prefilling) + len(self._decoding)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_cache_usage(self) -> float:
        """Share of the KV cache held by running sequences, 0..1."""
        return min(1.0, self._kv_used / self.kv_cache_tokens)

    def state(self) -> dict[str, object]:
        """A JSON-ready snapshot for `/sim/state` and tests."""
        return {
            "name": self.name,
            "gpu": self.gpu.gpu_id,
            "shape": self.spec.shape,
            "running": self.num_running,
            "waiting": self.num_waiting,
            "frontend": len(self._frontend),
            "kv_cache_usage": self.kv_cache_usage,
            "contention_factor": self.gpu.factor(self.name, self.model.contention_sensitivity),
            "prompt_tokens_total": self.stats.prompt_tokens_total,
            "generation_tokens_total": self.stats.generation_tokens_total,
            "request_success_total": dict(self.stats.request_success_total),
            "faults": self.faults.model_dump(),
            "time_scale": self.spec.time_scale,
        }
