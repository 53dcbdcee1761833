"""Run simulated engines: one uvicorn server per port inside the current event loop.

`serve_engines` binds each spec's port on loopback, shares one `SimGPU` per gpu id and returns a `SimCluster`
that stops engines gracefully or kills them abruptly (listening socket closed, connections reset) to mimic a
crash. `triage sim-engine` (server/cli/sim_engine.py) and the simulated engine kind run it. Knows nothing about
the latency model or OpenAI shapes.

uvicorn is driven through `Server.startup(sockets=...)` / `Server.shutdown()` rather than `serve()`, so no
server installs signal handlers or polls; whoever runs the engines handles SIGINT/SIGTERM once for all of them.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from types import TracebackType

import uvicorn

from server.sim.app import SimApp, quiet_dropped_stream_logs
from server.sim.engine import SimEngine
from server.sim.gpu import SimGPU
from server.sim.spec import FaultSpec, SimEngineSpec

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
