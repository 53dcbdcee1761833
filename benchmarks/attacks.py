"""Attack scenarios for `faults.py`: what an attacker or a careless client can do to a running router.

Each scenario starts its own `triage serve` and `triage sim-engine` subprocesses (helpers from `faults.py`),
sends only to 127.0.0.1, bounds every loop in count and time, and returns its numbers; `attack_summary()` picks
the issue's target keys out of them:

- `health_stall_ms_worst_scan` (<= 50): p99 `/health` latency, polled every 5 ms, while the slowest input of
  every privacy pattern at `privacy.max_scan_chars` (from `privacy_guard.worst_inputs`) is being processed;
- `foreign_feedback_accepted` (0): feedback a key got accepted on other keys' requests, its own dry runs and
  unknown ids;
- `budget_overrun_tokens_concurrent` (<= one request's reservation): tokens the engine reports beyond a
  1,000-token daily budget when 20 requests arrive at once, with and without `max_tokens` (and on two routers
  sharing one store);
- `legit_failed_under_slowloris` (0 of 100): legitimate requests that fail while 1,000 connections trickle
  their headers from two other processes;
- `header_bomb_rss_growth_mb` (<= 10): the router's RSS growth while four connections each try to send a 64 MB
  header.

Knows nothing about the router's internals beyond its HTTP API and its config file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks.common import REPO, child_env
from benchmarks.faults import QUESTION, Server, model_entry, p99_ms, router, running, sim_engine
from benchmarks.privacy_guard import chat, worst_inputs
from server.auth.budget import size_hold
from server.config import PrivacyConfig
from server.intake import receive

BODY_MARGIN = 64  # characters the request body adds around the prompt, beyond what `privacy_guard.chat` counts


def create_key(db: Path, name: str, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "keys", "--db", str(db), "create", name, *flags],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return str(json.loads(done.stdout)["key"])


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@contextlib.contextmanager
def running_pair(workdir: Path, config: dict[str, Any]) -> Iterator[tuple[Server, subprocess.Popen[bytes]]]:
    """One simulated engine behind one router with `config`, both ready: (router, the router's process)."""
    engine = sim_engine(workdir, "only")
    gateway = router(workdir, {**config, "models": [model_entry(engine, ["chat", "fast", "code"])]})
    with running(engine, gateway):
        assert gateway.proc is not None
        yield gateway, gateway.proc


# -- the privacy scan must not stall the router ----------------------------------------------------------------


async def _poll_health(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> list[tuple[float, float]]:
    """(sent at, latency) of GET /health every 5 ms until `stop` (bounded by 600 s)."""
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + 600
    while not stop.is_set() and time.monotonic() < deadline:
        t0 = time.monotonic()
        async with session.get(url) as r:
            await r.read()
        samples.append((t0, time.monotonic() - t0))
        await asyncio.sleep(0.005)
    return samples


async def worst_scan(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    max_chars = PrivacyConfig().max_scan_chars
    inputs = worst_inputs(max_chars - 128 - BODY_MARGIN)  # the body just under max_scan_chars: scanned in full
    windows: list[tuple[float, float, str, int]] = []  # (start, end, kind, status)
    with running_pair(workdir, {}) as (gateway, _):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            stop = asyncio.Event()
            poller = asyncio.create_task(_poll_health(session, f"{gateway.base}/health", stop))
            await asyncio.sleep(0.5)  # a baseline before the first scan
            for _ in range(3):
                for kind, text in inputs.items():
                    body = {**chat(text), "max_tokens": 1}
                    t0 = time.monotonic()
                    async with session.post(f"{gateway.base}/v1/chat/completions", json=body) as r:
                        await r.read()
                    windows.append((t0, time.monotonic(), kind, r.status))
            stop.set()
            samples = await poller
    during = [lat for at, lat in samples if any(a <= at <= b for a, b, _, _ in windows)]
    idle = [lat for at, lat in samples if at < windows[0][0]]
    per_kind = {
        kind: p99_ms([lat for at, lat in samples if any(a <= at <= b for a, b, k, _ in windows if k == kind)])
        for kind in inputs
    }
    return {
        "max_scan_chars": max_chars,
        "inputs": len(inputs),
        "scan_requests": len(windows),
        "statuses": dict(Counter(str(s) for _, _, _, s in windows)),
        "scan_request_p99_ms": p99_ms([b - a for a, b, _, _ in windows]),
        "health_samples_during_scans": len(during),
        "health_p99_ms_during_scans": p99_ms(during),
        "health_max_ms_during_scans": round(max(during, default=0.0) * 1e3, 1),
        "health_p99_ms_idle": p99_ms(idle),
        "health_p99_ms_by_kind": per_kind,
    }


# -- feedback from the wrong key -------------------------------------------------------------------------------


async def foreign_feedback(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    db = workdir / "feedback.db"
    victim, attacker = create_key(db, "victim"), create_key(db, "attacker", "--models", "only")
    config = {
        "auth": {"mode": "keys", "db": str(db)},
        "policy": {"name": "triage", "store": str(workdir / "decisions.db"), "explore_share": 0.0},
    }
    body = {"model": "auto", "messages": QUESTION, "max_tokens": 2}
    with running_pair(workdir, config) as (gateway, _):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def post(path: str, key: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
                async with session.post(gateway.base + path, json=payload, headers=bearer(key)) as r:
                    return r.status, await r.json(), r.headers.get("x-triage-request-id", "")

            async def candidate_terms() -> dict[str, Any]:
                _, decision, _ = await post("/v1/route", victim, {"messages": QUESTION})
                return dict(next(c for c in decision["candidates"] if c["model"] == "only"))

            before = await candidate_terms()
            victim_ids = [(await post("/v1/chat/completions", victim, body))[2] for _ in range(20)]
            dry_ids = [(await post("/v1/route", attacker, {"messages": QUESTION}))[1]["request_id"] for _ in range(20)]
            unknown = [secrets.token_hex(11) for _ in range(20)]
            targets = [*(victim_ids * 15), *dry_ids, *unknown]  # 300 on the victim's requests, 40 more
            outcomes: Counter[str] = Counter()
            for rid in targets:
                status, answer, _ = await post("/v1/feedback", attacker, {"request_id": rid, "score": 0.0})
                outcomes["accepted" if status == 200 and answer["accepted"] else str(status)] += 1
            after = await candidate_terms()
            own = (await post("/v1/chat/completions", attacker, body))[2]  # control: its own request counts
            await asyncio.sleep(1.1)  # a token back in its feedback bucket (60 per minute)
            control_status, control, _ = await post("/v1/feedback", attacker, {"request_id": own, "score": 1.0})
    return {
        "feedback_calls": len(targets),
        "outcomes": dict(outcomes),
        "foreign_feedback_accepted": outcomes["accepted"],
        "rate_limited_429": outcomes["429"],
        "victim_candidate_before": before,
        "victim_candidate_after": after,
        "control_own_request_accepted": control_status == 200 and bool(control["accepted"]),
    }


# -- budgets under concurrency ------------------------------------------------------------------------------


def _engine_tokens(status: int, content_type: str, text: str) -> int:
    if status != 200:
        return 0
    if content_type.startswith("application/json"):
        return int(json.loads(text)["usage"]["total_tokens"])
    for line in text.splitlines():
        if line.startswith("data: {") and '"usage":{' in line:
            return int(json.loads(line[6:])["usage"]["total_tokens"])
    raise RuntimeError("a served stream carried no usage event")


async def _burst(urls: list[str], key: str, body: dict[str, Any], count: int) -> list[tuple[int, int]]:
    """`count` requests at once, spread over `urls`; (status, engine-reported tokens) each."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int) -> tuple[int, int]:
            payload = {**body, "stream": i % 2 == 1}
            if payload["stream"]:
                payload["stream_options"] = {"include_usage": True}  # the client reads the engine's count
            async with session.post(urls[i % len(urls)], json=payload, headers=bearer(key)) as r:
                text = await r.text()
                return r.status, _engine_tokens(r.status, r.headers.get("content-type", ""), text)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def _reservation(body: dict[str, Any], budget: int) -> int:
    """What one request of `body` holds on a fresh `budget` (the router's own sizing, for the target)."""
    sized = size_hold(receive(json.dumps(body).encode(), "chat").demand(8192), budget)
    return sized[0] if sized else 0


async def budget_concurrent(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    budget, count = 1000, 20
    db = workdir / "budget.db"
    variants = {
        "no_max_tokens": {"model": "auto", "messages": QUESTION, "ignore_eos": True},
        "max_tokens_100": {"model": "auto", "messages": QUESTION, "ignore_eos": True, "max_tokens": 100},
    }
    config = {"auth": {"mode": "keys", "db": str(db)}}
    engine = sim_engine(workdir, "only")
    routers = [router(workdir, {**config, "models": [model_entry(engine, ["chat", "fast"])]}) for _ in "ab"]
    out: dict[str, Any] = {"daily_tokens": budget, "concurrent": count}
    with running(engine, *routers):
        urls = [f"{r.base}/v1/chat/completions" for r in routers]
        runs = [(name, body, urls[:1]) for name, body in variants.items()]
        runs.append(("two_routers_max_tokens_100", variants["max_tokens_100"], urls))
        for name, body, targets in runs:
            key = create_key(db, name, "--daily-tokens", str(budget))
            await asyncio.sleep(2.5)  # the routers re-read the keys every 2 s
            results = await _burst(targets, key, body, count)
            used = sum(tokens for _, tokens in results)
            out[name] = {
                "statuses": dict(Counter(str(s) for s, _ in results)),
                "engine_tokens": used,
                "overrun_tokens": max(0, used - budget),
                "one_reservation_tokens": _reservation(body, budget),
            }
    out["worst_overrun_tokens"] = max(out[name]["overrun_tokens"] for name, _, _ in runs)
    out["within_one_reservation"] = all(
        out[name]["overrun_tokens"] <= out[name]["one_reservation_tokens"] for name, _, _ in runs
    )
    return out


# -- slowloris ------------------------------------------------------------------------------------------------


def hold_slow_connections(port: int, count: int, hold_s: float, report: Any) -> None:
    """In its own process: `count` connections that send a request line and trickle one header byte per
    connection every 0.5 s for `hold_s`; reports ("open", n) once all are open, then ("closed", [seconds after
    opening at which the server closed each one])."""
    socks: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: ")
        sock.setblocking(False)
        socks.append(sock)
    opened = time.monotonic()
    report.put(("open", len(socks)))
    live = {s.fileno(): s for s in socks}
    closed: list[float] = []
    next_s = opened
    while live and time.monotonic() < opened + hold_s:
        readable, _, _ = select.select(list(live.values()), [], [], 0.05)
        for sock in readable:
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                sock.recv(65536)
            live.pop(sock.fileno(), None)  # the server answered (408) or closed it: either way it is over
            closed.append(time.monotonic() - opened)
        if time.monotonic() >= next_s:
            next_s += 0.5
            for sock in list(live.values()):
                with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                    sock.send(b"x")
    for sock in socks:
        sock.close()
    report.put(("closed", closed))


async def _legit(url: str, count: int, concurrency: int) -> list[tuple[int, float]]:
    body = {"model": "auto", "messages": QUESTION, "max_tokens": 4}
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> tuple[int, float]:
            async with gate:
                t0 = time.monotonic()
                try:
                    async with session.post(url, json=body) as r:
                        await r.read()
                        return r.status, time.monotonic() - t0
                except (aiohttp.ClientError, TimeoutError):
                    return 0, time.monotonic() - t0

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def slowloris(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    slow, legit, processes = 1000, 100, 2
    context = multiprocessing.get_context("spawn")
    report = context.Queue()
    hold_s = 20.0  # past the default header_timeout_s (10 s), to see every slow connection closed
    with running_pair(workdir, {}) as (gateway, router_proc):
        port = gateway.port
        url = f"{gateway.base}/v1/chat/completions"
        baseline = await _legit(url, legit, 8)
        holders = [
            context.Process(target=hold_slow_connections, args=(port, slow // processes, hold_s, report))
            for _ in range(processes)
        ]
        for holder in holders:
            holder.start()
        opened = 0
        for _ in holders:
            opened += (await asyncio.to_thread(report.get, True, 60))[1]
        held_at_start = len(psutil.Process(router_proc.pid).net_connections("tcp"))
        under_attack = await _legit(url, legit, 8)
        closed_times: list[float] = []
        for _ in holders:
            closed_times += (await asyncio.to_thread(report.get, True, hold_s + 60))[1]
        for holder in holders:
            holder.join(10)
    return {
        "slow_connections": opened,
        "router_tcp_connections_when_attack_began": held_at_start,
        "legit_requests": legit,
        "legit_failed_baseline": sum(1 for s, _ in baseline if s != 200),
        "legit_failed_under_slowloris": sum(1 for s, _ in under_attack if s != 200),
        "legit_p99_ms_baseline": p99_ms([t for _, t in baseline]),
        "legit_p99_ms_under_slowloris": p99_ms([t for _, t in under_attack]),
        "slow_closed_by_server": len(closed_times),
        "slow_closed_after_s_min": round(min(closed_times, default=0.0), 2),
        "slow_closed_after_s_max": round(max(closed_times, default=0.0), 2),
    }


# -- header bomb ----------------------------------------------------------------------------------------------


def _bomb(port: int, header_bytes: int) -> dict[str, Any]:
    """One connection trying to send a `header_bytes` header; stops when the server answers or hangs up."""
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-bomb: ")
        chunk = b"a" * 65536
        while sent < header_bytes:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        with contextlib.suppress(OSError):
            sock.settimeout(5)
            answer = sock.recv(65536)
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "none"
    return {"sent_bytes": sent, "status": status}


async def header_bomb(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    rss_mb: list[float] = []
    stop = threading.Event()
    with running_pair(workdir, {}) as (gateway, router_proc):
        proc = psutil.Process(router_proc.pid)
        before_mb = proc.memory_info().rss / 2**20

        def sample() -> None:
            while not stop.is_set():
                rss_mb.append(proc.memory_info().rss / 2**20)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            health_stop = asyncio.Event()
            poller = asyncio.create_task(_poll_health(session, f"{gateway.base}/health", health_stop))
            bombs = await asyncio.gather(*(asyncio.to_thread(_bomb, gateway.port, 64 * 2**20) for _ in range(4)))
            await asyncio.sleep(0.5)
            health_stop.set()
            health = [lat for _, lat in await poller]
        stop.set()
        sampler.join(5)
        after_mb = proc.memory_info().rss / 2**20
    return {
        "bombs": bombs,
        "rss_mb_before": round(before_mb, 1),
        "rss_mb_max": round(max(rss_mb, default=before_mb), 1),
        "rss_mb_after": round(after_mb, 1),
        "header_bomb_rss_growth_mb": round(max(rss_mb, default=before_mb) - before_mb, 1),
        "health_p99_ms": p99_ms(health),
        "health_max_ms": round(max(health, default=0.0) * 1e3, 1),
    }


ATTACKS = {
    "worst_scan": worst_scan,
    "foreign_feedback": foreign_feedback,
    "budget_concurrent": budget_concurrent,
    "slowloris": slowloris,
    "header_bomb": header_bomb,
}


def attack_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's target keys, from whichever attack scenarios ran (None where one did not)."""
    return {
        "health_stall_ms_worst_scan": results.get("worst_scan", {}).get("health_p99_ms_during_scans"),
        "foreign_feedback_accepted": results.get("foreign_feedback", {}).get("foreign_feedback_accepted"),
        "budget_overrun_tokens_concurrent": results.get("budget_concurrent", {}).get("worst_overrun_tokens"),
        "legit_failed_under_slowloris": results.get("slowloris", {}).get("legit_failed_under_slowloris"),
        "header_bomb_rss_growth_mb": results.get("header_bomb", {}).get("header_bomb_rss_growth_mb"),
    }
