"""Run simulated engines: one uvicorn server per port inside the current event loop, plus the CLI.

`serve_engines` binds each spec's port on loopback, shares one `SimGPU` per gpu id and returns a `SimCluster`
that stops engines gracefully or kills them abruptly (listening socket closed, connections reset) to mimic a
crash. `main` backs the console command `triage sim-engine`. Knows nothing about the latency model or OpenAI
shapes.

uvicorn is driven through `Server.startup(sockets=...)` / `Server.shutdown()` rather than `serve()`, so no
server installs signal handlers or polls; the CLI handles SIGINT/SIGTERM once for all engines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass
from types import TracebackType

import uvicorn

from server.sim.app import SimApp, quiet_dropped_stream_logs
from server.sim.config import SimConfigError, specs_from_yaml
from server.sim.engine import SimEngine
from server.sim.gpu import SimGPU
from server.sim.spec import SHAPE_NAMES, FaultSpec, SimEngineSpec

log = logging.getLogger(__name__)

GRACEFUL_STOP_S = 1  # seconds a graceful stop lets open responses finish (uvicorn takes an int)


class SimClusterError(ValueError):
    """Bad engine set (duplicate names) or an unknown engine name."""


@dataclass
class _Member:
    engine: SimEngine
    server: uvicorn.Server
    port: int
    live: bool = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SimClusterError(f"cannot listen on {host}:{port}: {exc}; free the port or use port 0") from exc
    sock.setblocking(False)
    return sock


def _abort_connections(server: uvicorn.Server) -> None:
    """Reset every open connection of `server` (no FIN, no more bytes)."""
    for conn in list(server.server_state.connections):
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.abort()


class SimCluster:
    """Simulated engines running in this event loop; use `async with` or call `stop()`."""

    def __init__(self, members: dict[str, _Member], gpus: dict[str, SimGPU]) -> None:
        self._members = members
        self.gpus = gpus

    @property
    def engines(self) -> dict[str, SimEngine]:
        return {name: m.engine for name, m in self._members.items()}

    def port(self, name: str) -> int:
        return self._member(name).port

    def base_url(self, name: str) -> str:
        """OpenAI base URL of engine `name`, e.g. http://127.0.0.1:8101/v1."""
        m = self._member(name)
        host = m.engine.spec.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{m.port}/v1"

    def set_faults(self, name: str, faults: FaultSpec) -> None:
        """In-process twin of `POST /sim/faults`."""
        self._member(name).engine.faults = faults

    async def stop_engine(self, name: str) -> None:
        """Graceful stop: no new connections, open requests end (streams get an error event), then close."""
        m = self._member(name)
        if not m.live:
            return
        m.live = False
        for srv in m.server.servers:
            srv.close()
        await m.engine.stop()
        await m.server.shutdown()
        _abort_connections(m.server)  # e.g. requests held by the hang fault

    async def kill_engine(self, name: str) -> None:
        """Crash: close the listening socket and reset every connection at once; nothing more is sent."""
        m = self._member(name)
        if not m.live:
            return
        m.live = False
        for srv in m.server.servers:
            srv.close()
        _abort_connections(m.server)
        for task in list(m.server.server_state.tasks):
            task.cancel()
        await m.engine.stop()

    async def restart_engine(self, name: str) -> None:
        """Bring a stopped or killed engine back on the same port with fresh state (queues, counters)."""
        m = self._member(name)
        if m.live:
            return
        spec = m.engine.spec.model_copy(update={"port": m.port, "faults": m.engine.faults})
        self._members[name] = await _start_one(spec, self.gpus[spec.gpu])

    async def stop(self) -> None:
        """Stop every engine gracefully, concurrently."""
        await asyncio.gather(*(self.stop_engine(name) for name in self._members))

    def _member(self, name: str) -> _Member:
        m = self._members.get(name)
        if m is None:
            raise SimClusterError(f"no simulated engine '{name}'; running: {', '.join(self._members)}")
        return m

    async def __aenter__(self) -> SimCluster:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def _start_one(spec: SimEngineSpec, gpu: SimGPU) -> _Member:
    engine = SimEngine(spec, gpu)
    config = uvicorn.Config(
        SimApp(engine),
        host=spec.host,
        port=spec.port,
        loop="none",
        http="httptools",
        ws="none",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        date_header=False,
        server_header=False,
        backlog=4096,
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # what Server._serve would set; lifespan is "off"
    sock = _bind(spec.host, spec.port)
    try:
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    engine.start()
    return _Member(engine, server, sock.getsockname()[1])


async def serve_engines(specs: list[SimEngineSpec]) -> SimCluster:
    """Start every engine in the running loop; engines with the same `gpu` share one SimGPU."""
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SimClusterError(f"engine names must be unique; repeated: {', '.join(dupes)}")
    quiet_dropped_stream_logs()
    gpus: dict[str, SimGPU] = {}
    members: dict[str, _Member] = {}
    cluster = SimCluster(members, gpus)
    try:
        for spec in specs:
            gpu = gpus.setdefault(spec.gpu, SimGPU(spec.gpu))
            members[spec.name] = await _start_one(spec, gpu)
    except BaseException:
        await cluster.stop()
        raise
    return cluster


# ---- CLI: triage sim-engine --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="triage sim-engine", description="Run simulated vLLM engines (CPU only) until SIGINT/SIGTERM."
    )
    src = p.add_argument_group("from a file")
    src.add_argument("--config", help="YAML with 'sim_engines:' or a Triage config whose models have 'simulated:'")
    one = p.add_argument_group("one engine from flags")
    one.add_argument("--name", help="served model name")
    one.add_argument("--port", type=int, help="TCP port on 127.0.0.1")
    one.add_argument("--shape", default="qwen2.5-7b", choices=SHAPE_NAMES, help="latency preset")
    one.add_argument("--gpu", default="gpu0", help="simulated GPU id")
    one.add_argument("--max-num-seqs", type=int, default=256, help="continuous-batching capacity")
    one.add_argument("--max-model-len", type=int, default=8192, help="prompt + output token limit")
    one.add_argument("--default-output-tokens", type=int, default=128, help="typical reply length")
    one.add_argument("--time-scale", type=float, default=1.0, help="multiplies all simulated times")
    one.add_argument("--seed", type=int, default=0, help="seed of lengths, text and faults")
    flt = p.add_argument_group("faults (one engine)")
    flt.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with 500")
    flt.add_argument("--drop-mid-stream-rate", type=float, default=0.0, help="share of streams cut")
    flt.add_argument("--hang", action="store_true", help="never answer generation requests")
    flt.add_argument("--slowdown", type=float, default=1.0, help="multiplies step time")
    run = p.add_argument_group("run")
    run.add_argument("--run-for-s", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def _specs_from_args(args: argparse.Namespace) -> list[SimEngineSpec]:
    if args.config:
        return specs_from_yaml(args.config)
    if not args.name or args.port is None:
        raise SimConfigError("give --config PATH.yaml, or --name and --port for one engine")
    faults = FaultSpec(
        error_rate=args.error_rate,
        hang=args.hang,
        drop_mid_stream_rate=args.drop_mid_stream_rate,
        slowdown=args.slowdown,
    )
    return [
        SimEngineSpec(
            name=args.name,
            port=args.port,
            shape=args.shape,
            gpu=args.gpu,
            max_num_seqs=args.max_num_seqs,
            max_model_len=args.max_model_len,
            default_output_tokens=args.default_output_tokens,
            time_scale=args.time_scale,
            seed=args.seed,
            faults=faults,
        )
    ]


async def _serve_until_signal(specs: list[SimEngineSpec], run_for_s: float | None) -> None:
    cluster = await serve_engines(specs)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for spec in specs:
        print(
            f"sim-engine {spec.name}: {cluster.base_url(spec.name)} shape={spec.shape} gpu={spec.gpu} "
            f"max_num_seqs={spec.max_num_seqs} time_scale={spec.time_scale}",
            flush=True,
        )
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), run_for_s)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await cluster.stop()


def main(argv: list[str] | None = None) -> int:
    """`triage sim-engine`: exit 0 after a clean stop, 2 on a config error."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        specs = _specs_from_args(args)
    except ValueError as exc:  # SimConfigError and pydantic's ValidationError
        print(f"triage sim-engine: {exc}")
        return 2
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        log.info("uvloop not installed; using the default asyncio loop")
        runner = asyncio.Runner()
    with runner:
        try:
            runner.run(_serve_until_signal(specs, args.run_for_s))
        except SimClusterError as exc:
            print(f"triage sim-engine: {exc}")
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
