"""Starts, supervises and stops the engine processes that `launch:` blocks ask for: one `vllm serve` per model.

`Supervisor.start()` assigns ports, checks that the engines' memory shares fit each GPU's free memory (NVML), then
starts the engines, waits for each `/health`, and returns where each engine listens (the config is never changed).
vLLM sizes its KV cache from the memory it sees free, so engines sharing a GPU start one after another, unless
every engine on that GPU has a fixed cache (`launch.kv_cache_memory_gib`); all others start at the same time. Engine
output goes to the log line by line as `[model] ...`. A crashed engine is marked unhealthy in the `LoadBoard` (the
policy routes around it), restarted with exponential backoff, and marked healthy once `/health` passes. `stop()`
ends every engine's whole process group: SIGTERM, then SIGKILL after a grace period.

No orphans, whatever ends Triage:
- clean exit, SIGTERM or SIGINT: uvicorn runs the lifespan's shutdown, which calls `stop()`; during the minutes
  of start-up the same signals cancel it (uvicorn would only act on them once start-up had finished);
- SIGKILL or a crash: each engine runs under PR_SET_PDEATHSIG (Linux), so the kernel sends it SIGTERM when
  Triage dies, and vLLM takes its own workers down. It is set by a small exec trampoline rather than
  `preexec_fn`, which CPython documents as unsafe in a process with threads (ours has NVML and executor threads).

Knows nothing about routing, request relaying or engine clients; it only tells the `LoadBoard` when an engine is
down or back. The vLLM engine kind (`backends/vllm.py`) runs it as its provisioner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .config import ModelConfig, gpu_shares
from .load import LoadBoard
from .telemetry.metrics import Metrics
from .telemetry.nvml import GIB, read_gpus_once

log = logging.getLogger(__name__)
engine_log = logging.getLogger(__name__ + ".output")  # engine stdout/stderr; silence it on its own if noisy

LOG_TAIL_LINES = 30  # engine output kept for error messages
LOG_LINE_LIMIT = 1 << 20  # bytes; longer lines (progress bars) are cut, never fatal
KILL_WAIT_S = 5.0  # after SIGKILL, how long to wait for the group to disappear
# Runs the engine command with PR_SET_PDEATHSIG=SIGTERM (1 = PR_SET_PDEATHSIG); the flag survives execve.
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('triage exited before its engine started')\n"
    "try:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as exc:\n"
    "    sys.exit(f'cannot run {sys.argv[2]}: {exc.strerror}')\n"
)


class LaunchError(RuntimeError):
    """An engine could not be started or does not fit; the message names the model and what to change."""


def default_command() -> list[str]:
    # `python -m` with the running interpreter: some vLLM installs (the GPU machine's bundle) have no `vllm` script.
    return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]


def build_argv(model: ModelConfig, port: int) -> list[str]:
    """The engine's command line: `<command> MODEL --host .. --port .. [flags set from the config] [extra_args]`."""
    launch = model.launch
    if launch is None:
        raise ValueError(f"model '{model.name}' has no launch block")
    return [
        *(launch.command or default_command()),
        launch.model,
        "--host",
        launch.host,
        "--port",
        str(port),
        "--served-model-name",
        model.upstream_name,
        "--gpu-memory-utilization",
        f"{launch.gpu_memory_utilization:g}",
        "--max-model-len",
        str(launch.max_model_len or model.context_length),
        "--max-num-seqs",
        str(launch.max_num_seqs or model.profile.max_num_seqs),
        *(
            ["--kv-cache-memory-bytes", str(round(launch.kv_cache_memory_gib * GIB))]
            if launch.kv_cache_memory_gib is not None
            else []
        ),
        *launch.extra_args,
    ]


def build_env(model: ModelConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The engine's environment: ours, its GPU(s), its API key, then `launch.env` on top."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHONUNBUFFERED", "1")  # log lines as they happen, not in 8 KiB blocks
    if model.gpu is not None:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA then numbers GPUs as NVML does: `gpu` means one device
        env["CUDA_VISIBLE_DEVICES"] = model.gpu
    if model.api_key:
        env["VLLM_API_KEY"] = model.api_key  # in the environment, not on the command line where `ps` shows it
    if model.launch is not None:
        env.update(model.launch.env)
    return env


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """`argv` run through the PR_SET_PDEATHSIG trampoline on Linux; unchanged elsewhere."""
    if not sys.platform.startswith("linux"):
        return argv
    return [sys.executable, "-c", _PDEATHSIG_EXEC, str(os.getpid()), *argv]


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (another process could still take it before the engine binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`, from /proc; [] where there is no /proc."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue  # exited while we looked
        # fields after the ')' that ends the command name: state ppid pgrp session ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.parent.name))
    return pids


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Engine:
    """One launched model and its current process."""

    model: ModelConfig
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    log_task: asyncio.Task[None] | None = None
    supervisor: asyncio.Task[None] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    restarts_in_row: int = 0
    healthy_since_s: float | None = None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def endpoint(self) -> str:
        """OpenAI base URL of the engine, e.g. http://127.0.0.1:8001/v1 (once a port is assigned)."""
        launch = self.model.launch
        if launch is None:
            raise ValueError(f"model '{self.name}' has no launch block")
        return launch.endpoint(self.port)

    @property
    def health_url(self) -> str:
        return self.endpoint.removesuffix("/v1") + "/health"

    def last_output(self) -> str:
        return "\n".join(f"  [{self.name}] {line}" for line in self.tail) or "  (no output)"


class Supervisor:
    """Owns the launched engines of one Triage process."""

    def __init__(
        self, models: list[ModelConfig], load: LoadBoard, metrics: Metrics | None = None, *, health_poll_s: float = 1.0
    ) -> None:
        self.models = [m for m in models if m.launch is not None]
        self.engines = {m.name: Engine(m) for m in self.models}
        self.load = load
        self.metrics = metrics
        self.health_poll_s = health_poll_s
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False

    def process_groups(self) -> dict[str, int]:
        """Model -> process group id (= its engine leader's pid) of every engine process now running."""
        return {
            e.name: e.process.pid
            for e in self.engines.values()
            if e.process is not None and e.process.returncode is None
        }

    # -- start -------------------------------------------------------------------------------------------

    async def start(self) -> dict[str, list[str]]:
        """Start every engine and wait until all are healthy; model -> [its engine's OpenAI base URL].

        On any failure stop them all and raise (LaunchError says why)."""
        starting = asyncio.ensure_future(self._start_all())
        try:
            with _cancel_on_signals(starting) as received:
                try:
                    await starting
                except asyncio.CancelledError:
                    if not (received and starting.cancelled()):
                        raise  # cancelled from outside, not by a signal
                    names = ", ".join(signal.Signals(s).name for s in received)
                    raise LaunchError(f"engine start-up interrupted by {names}") from None
        except BaseException as exc:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            if isinstance(exc, LaunchError):
                log.error("%s", exc)
            await self.stop()
            raise
        return {name: [engine.endpoint] for name, engine in self.engines.items()}

    async def _start_all(self) -> None:
        self._session = aiohttp.ClientSession()
        self._assign_ports()
        await self._check_free_memory()
        together, in_turn = self._start_order()
        if together:
            log.info("starting the engines for %s at the same time (fixed KV caches)", ", ".join(together))
            try:
                async with asyncio.TaskGroup() as group:
                    for name in together:
                        group.create_task(self._start_one(self.engines[name]))
            except ExceptionGroup as failed:  # the first failure cancelled the others: report it alone
                raise failed.exceptions[0] from None
        for name in in_turn:  # one at a time: each of these vLLMs sizes its KV cache from the memory it sees free
            await self._start_one(self.engines[name])
        for engine in self.engines.values():
            engine.supervisor = asyncio.create_task(self._supervise(engine), name=f"supervise-{engine.name}")

    def _start_order(self) -> tuple[list[str], list[str]]:
        """(engines that may start together, engines to start one after another), by model name.

        Engines take turns on a GPU that several of them share when one of them sizes its KV cache from the memory
        it sees free (another's start-up would mislead it); on every other GPU they start together.
        """
        engines_on: dict[str, int] = {}
        sizes_from_free: set[str] = set()
        for m in self.models:
            for gpu in m.gpu_ids:
                engines_on[gpu] = engines_on.get(gpu, 0) + 1
                if m.launch is not None and m.launch.kv_cache_memory_gib is None:
                    sizes_from_free.add(gpu)
        turns = {gpu for gpu in sizes_from_free if engines_on[gpu] > 1}
        together = [m.name for m in self.models if not turns & set(m.gpu_ids)]
        return together, [m.name for m in self.models if m.name not in together]

    async def _start_one(self, engine: Engine) -> None:
        t0 = time.monotonic()
        await self._spawn(engine)
        await self._wait_healthy(engine)
        engine.healthy_since_s = time.monotonic()
        self.load.mark_healthy(engine.name)
        log.info("engine for %s healthy after %.0f s at %s", engine.name, time.monotonic() - t0, engine.endpoint)

    def _assign_ports(self) -> None:
        taken = {m.launch.port for m in self.models if m.launch is not None and m.launch.port != "auto"}
        for engine in self.engines.values():
            launch = engine.model.launch
            if launch is None:
                continue
            if launch.port == "auto":
                port = free_port(launch.connect_host)
                for _ in range(100):  # the OS rarely hands out a port twice in a row; skip our fixed ones
                    if port not in taken:
                        break
                    port = free_port(launch.connect_host)
                taken.add(port)
            else:
                port = launch.port
            engine.port = port

    async def _check_free_memory(self) -> None:
        """Compare each GPU's free memory with the shares its engines will take; raise naming them if short."""
        readings = await asyncio.to_thread(read_gpus_once)
        if readings is None:
            log.warning("cannot check free GPU memory (no NVML); each vLLM engine checks its own share")
            return
        by_gpu = {r.gpu: r for r in readings}
        problems = []
        for gpu, shares in gpu_shares(self.models).items():
            reading = by_gpu.get(gpu)
            if reading is None:
                problems.append(
                    f"GPU {gpu} (of {', '.join(shares)}) does not exist; NVML sees GPUs "
                    f"{', '.join(by_gpu) or 'none'} (set the models' gpu field to one of them)"
                )
                continue
            total = reading.memory_total_bytes
            need = sum(shares.values()) * total
            if need <= reading.memory_free_bytes:
                continue
            parts = ", ".join(f"{name} {share:g} = {share * total / GIB:.1f} GiB" for name, share in shares.items())
            holders = sorted(reading.processes.items(), key=lambda kv: -kv[1])[:5]
            held = "; held by " + ", ".join(f"pid {pid} ({b / GIB:.1f} GiB)" for pid, b in holders) if holders else ""
            problems.append(
                f"GPU {gpu} ({reading.name}) has {reading.memory_free_bytes / GIB:.1f} of "
                f"{total / GIB:.1f} GiB free, but its engines need {need / GIB:.1f} GiB ({parts})"
                f"{held}"
            )
        if problems:
            raise LaunchError(
                "engines do not fit in GPU memory: "
                + "; ".join(problems)
                + ". Stop the processes holding memory or lower launch.gpu_memory_utilization"
            )

    async def _spawn(self, engine: Engine) -> None:
        argv = build_argv(engine.model, engine.port)
        if shutil.which(argv[0]) is None:
            raise LaunchError(
                f"cannot start the engine for '{engine.name}': '{argv[0]}' is not an executable "
                "on PATH; set launch.command or install vLLM"
            )
        creating = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *with_parent_death_signal(argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=build_env(engine.model),
                start_new_session=True,  # own process group: signals reach its workers, not Triage's terminal
                limit=LOG_LINE_LIMIT,
            )
        )
        try:
            try:
                process = await asyncio.shield(creating)
            except asyncio.CancelledError:  # stop() came mid-fork: keep the process so stop() can end it
                engine.process = await creating
                raise
        except OSError as exc:
            raise LaunchError(
                f"cannot start the engine for '{engine.name}' ({shlex.join(argv[:4])} ...): "
                f"{exc.strerror}; set launch.command or install vLLM"
            ) from None
        engine.process = process
        engine.healthy_since_s = None
        if process.stdout is not None:
            engine.log_task = asyncio.create_task(
                self._pump_output(engine, process.stdout), name=f"output-{engine.name}"
            )
        log.info("started engine for %s, pid %d: %s", engine.name, process.pid, shlex.join(argv))

    async def _pump_output(self, engine: Engine, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over LOG_LINE_LIMIT: asyncio dropped it, go on with the next
                continue
            if not raw:
                return
            # keep the last frame of a \r progress bar; drop colour codes' worth of trailing whitespace
            line = raw.decode(errors="replace").rstrip().rsplit("\r", 1)[-1]
            if line:
                engine.tail.append(line)
                engine_log.info("[%s] %s", engine.name, line)

    async def _wait_healthy(self, engine: Engine) -> None:
        """Poll `/health` until it answers 200; raise if the process exits or the start-up timeout passes."""
        launch, process, session = engine.model.launch, engine.process, self._session
        if launch is None or process is None or session is None:
            raise RuntimeError("_wait_healthy before _spawn")
        deadline_s = time.monotonic() + launch.startup_timeout_s
        probe_timeout = aiohttp.ClientTimeout(total=min(5.0, launch.startup_timeout_s))
        while True:
            if process.returncode is not None:
                await self._drain_output(engine)
                raise LaunchError(
                    f"engine for '{engine.name}' {describe_exit(process.returncode)} while starting;"
                    f" its last output:\n{engine.last_output()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(engine.health_url, timeout=probe_timeout) as response:
                    if response.status == 200:
                        return
            if time.monotonic() >= deadline_s:
                raise LaunchError(
                    f"engine for '{engine.name}' did not answer {engine.health_url} within "
                    f"{launch.startup_timeout_s:g} s (launch.startup_timeout_s); raise it if the engine is still "
                    f"loading (downloads and torch.compile take minutes), else see its last output:\n"
                    f"{engine.last_output()}"
                )
            await wait_exit(process, min(self.health_poll_s, deadline_s - time.monotonic()))

    async def _drain_output(self, engine: Engine) -> None:
        """Let the output pump read what a dead engine printed last (bounded: its pipe closes with it)."""
        if engine.log_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(engine.log_task), 2.0)

    # -- supervise ---------------------------------------------------------------------------------------

    async def _supervise(self, engine: Engine) -> None:
        launch = engine.model.launch
        if launch is None:
            return
        policy = launch.restart
        while engine.process is not None:
            await wait_exit(engine.process, math.inf, poll_s=0.2)
            returncode = engine.process.returncode or 0
            if self._stopping:
                return
            now_s = time.monotonic()
            if engine.healthy_since_s is not None and now_s - engine.healthy_since_s >= policy.stable_s:
                engine.restarts_in_row = 0
            await self._drain_output(engine)
            what = f"engine {describe_exit(returncode)}"
            if engine.restarts_in_row >= policy.max_restarts:
                self.load.mark_unhealthy(engine.name, f"{what}; gave up after {policy.max_restarts} restarts")
                log.error(
                    "engine for %s %s; gave up after %d restarts in a row, it stays down. Last output:\n%s",
                    engine.name,
                    describe_exit(returncode),
                    policy.max_restarts,
                    engine.last_output(),
                )
                await self._kill_group(engine.process.pid)
                return
            delay_s = min(policy.backoff_initial_s * 2**engine.restarts_in_row, policy.backoff_max_s)
            engine.restarts_in_row += 1
            self.load.mark_unhealthy(engine.name, f"{what}; restarting")
            log.warning(
                "engine for %s %s; routing around it, restart %d/%d in %.1f s. Last output:\n%s",
                engine.name,
                describe_exit(returncode),
                engine.restarts_in_row,
                policy.max_restarts,
                delay_s,
                engine.last_output(),
            )
            await self._kill_group(engine.process.pid)  # workers of the dead leader still hold GPU memory
            await asyncio.sleep(delay_s)
            if self.metrics is not None:
                self.metrics.engine_restarts.labels(engine.name).inc()
            try:
                await self._spawn(engine)
                await self._wait_healthy(engine)
            except LaunchError as exc:
                log.error("restart of %s failed: %s", engine.name, exc)
                await self._terminate(engine)  # then the loop counts it as one more crash
                continue
            engine.healthy_since_s = time.monotonic()
            self.load.mark_healthy(engine.name)
            log.info("engine for %s is healthy again after restart %d", engine.name, engine.restarts_in_row)

    # -- stop --------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop every engine (SIGTERM to its group, SIGKILL after `launch.stop_timeout_s`); idempotent."""
        self._stopping = True
        supervisors = [e.supervisor for e in self.engines.values() if e.supervisor is not None]
        for task in supervisors:
            task.cancel()
        await asyncio.gather(*supervisors, return_exceptions=True)
        await asyncio.gather(*(self._terminate(e) for e in self.engines.values()))
        outputs = [e.log_task for e in self.engines.values() if e.log_task is not None]
        for task in outputs:
            task.cancel()
        await asyncio.gather(*outputs, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _terminate(self, engine: Engine) -> None:
        process, launch = engine.process, engine.model.launch
        if process is None or launch is None:
            return
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            if await wait_exit(process, launch.stop_timeout_s):
                log.info("engine for %s stopped", engine.name)
            else:
                log.warning(
                    "engine for %s still running %g s after SIGTERM; sending SIGKILL",
                    engine.name,
                    launch.stop_timeout_s,
                )
        await self._kill_group(process.pid)  # the leader is gone or overdue: nothing of its group may stay
        await wait_exit(process, KILL_WAIT_S)

    async def _kill_group(self, pgid: int) -> None:
        """SIGKILL whatever is left of a process group and wait (bounded) until /proc shows none of it."""
        if sys.platform.startswith("linux") and not session_processes(pgid):
            return  # nothing left; never signal a group id the OS may have handed out again
        _signal_group(pgid, signal.SIGKILL)
        deadline_s = time.monotonic() + KILL_WAIT_S
        while sys.platform.startswith("linux") and session_processes(pgid) and time.monotonic() < deadline_s:
            await asyncio.sleep(0.05)


async def wait_exit(process: asyncio.subprocess.Process, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Whether `process` exited within `timeout_s`. Polls `returncode` because `Process.wait()` also waits
    for the process's pipes to close, and a crashed vLLM's surviving workers hold its stdout open."""
    deadline_s = time.monotonic() + timeout_s
    while process.returncode is None:
        if time.monotonic() >= deadline_s:
            return False
        await asyncio.sleep(min(poll_s, max(0.0, deadline_s - time.monotonic())))
    return True


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


@contextlib.contextmanager
def _cancel_on_signals(task: asyncio.Future[None]) -> Iterator[list[int]]:
    """While `task` runs, SIGINT/SIGTERM cancel it and then reach the handler installed before (uvicorn's).

    Yields the list of signals received. Only in the main thread, where Python delivers signals.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[..., object] | int | None] = {}

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        loop.call_soon_threadsafe(task.cancel)
        before = previous.get(signum)
        if callable(before) and before is not signal.default_int_handler:
            before(signum, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)
