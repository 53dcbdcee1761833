"""`SimEngine`: continuous batching of simulated sequences on a shared simulated GPU.

One asyncio task per engine runs the step loop: admit waiting requests (FIFO, at most `max_num_seqs` running,
KV cache permitting), give prompt chunks to prefilling sequences within the step's token budget, sleep the
step time from `latency.py` (times contention, slowdown and time_scale), then hand one token to every
sequence in the step and wake their consumers. Knows nothing about HTTP, JSON or the text of tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from server.sim.gpu import SimGPU
from server.sim.latency import SHAPES, LatencyModel
from server.sim.sequence import SeqState, Sequence
from server.sim.spec import FaultSpec, SimEngineSpec
from server.sim.stats import EngineStats

log = logging.getLogger(__name__)

# If the loop falls this far behind its step deadlines (a busy CPU), it stops trying to catch up.
MAX_LAG_S = 0.05


class EngineError(Exception):
    """Base of the engine's typed errors."""


class RequestTooLongError(EngineError):
    """Prompt plus requested output exceed max_model_len (vLLM answers 400)."""


class EngineStoppedError(EngineError):
    """The engine is stopped and takes no requests."""


class SimEngine:
    """Scheduler and step loop of one simulated engine; create and use it inside a running event loop."""

    def __init__(self, spec: SimEngineSpec, gpu: SimGPU | None = None) -> None:
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
        self._rng = random.Random(spec.seed)
        self._next_id = 0
        self._waiting: dict[int, Sequence] = {}  # FIFO by insertion order
        self._prefilling: dict[int, Sequence] = {}  # admitted, prompt not fully processed
        self._decoding: dict[int, Sequence] = {}  # first token out; one token per step
        self._frontend: dict[int, Sequence] = {}  # in the API-server delay
        self._kv_used = 0  # tokens held by running sequences: prompt + generated
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Register on the GPU and start the step loop; call from inside the event loop."""
        if self._task is not None:
            return
        self.gpu.register(self.name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sim-engine-{self.name}")

    async def stop(self) -> None:
        """Abort every sequence (their consumers wake with finish_reason 'abort') and end the loop."""
        self._stopped = True
        for group in (self._frontend, self._waiting, self._prefilling, self._decoding):
            for seq in list(group.values()):
                self._remove(seq, "abort")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.gpu.unregister(self.name)

    # ---- requests --------------------------------------------------------------------------------------

    def submit(self, prompt_tokens: int, max_tokens: int | None = None, ignore_eos: bool = False) -> Sequence:
        """Queue a request; the reply length is max_tokens with ignore_eos, else a draw around the default."""
        if self._stopped:
            raise EngineStoppedError(f"engine '{self.name}' is stopped")
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
        else:
            draw = round(self.spec.default_output_tokens * self._rng.uniform(0.5, 1.5))
            target = max(1, min(max_tokens, draw))
        loop = asyncio.get_running_loop()
        self._next_id += 1
        seq = Sequence(self._next_id, prompt_tokens, max_tokens, target, loop.time(), self._cancel)
        delay_s = self.model.frontend_ms * self.spec.time_scale / 1000.0
        if delay_s > 0:
            self._frontend[seq.seq_id] = seq
            seq._timer = loop.call_later(delay_s, self._enqueue, seq)
        else:
            self._enqueue(seq)
        return seq

    def _enqueue(self, seq: Sequence) -> None:
        self._frontend.pop(seq.seq_id, None)
        seq._timer = None
        seq.state = SeqState.WAITING
        self._waiting[seq.seq_id] = seq
        self._work.set()

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
        now = asyncio.get_running_loop().time()
        if reason != "abort":
            self.stats.e2e_s.observe(now - seq.arrival_s)
        seq.wake()

    # ---- the step loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline_s = loop.time()
        while True:
            if not (self._waiting or self._prefilling or self._decoding):
                self.gpu.report(self.name, 0)
                self._work.clear()
                await self._work.wait()
                deadline_s = loop.time()
            start_s = loop.time()
            self._admit(start_s)
            decoding = list(self._decoding.values())  # each gets a token at the end of the step
            prefill_tokens, first = self._plan_prefill(len(decoding))
            running = len(self._prefilling) + len(self._decoding)
            self.gpu.report(self.name, running)
            factor = self.gpu.factor(self.name, self.model.contention_sensitivity)
            step_ms = self.model.step_ms(len(decoding) + len(first), prefill_tokens)
            deadline_s += step_ms * factor * self.faults.slowdown * self.spec.time_scale / 1000.0
            if deadline_s < start_s - MAX_LAG_S:
                deadline_s = start_s
            await asyncio.sleep(max(0.0, deadline_s - loop.time()))
            self._emit(decoding, first, loop.time(), loop.time() - start_s)

    def _admit(self, now_s: float) -> None:
        """Move waiting sequences to running in FIFO order while capacity and KV cache allow."""
        cap = self.spec.max_num_seqs
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
