"""Fault benchmark: Triage under steady load on 127.0.0.1 while simulated engines fail, plus overload, a router
SIGKILL during usage writes, a planted-secrets corpus, the schemathesis run, the attacks of `attacks.py`
(worst privacy scan, foreign feedback, concurrent budget use, slowloris, header bomb) and the privacy guard's
own benchmark (`privacy_guard.py`).

Every scenario starts its own `triage serve` subprocess and one `triage sim-engine` subprocess per model (so an
engine can be SIGKILLed), drives a bounded closed-loop load (fixed clients, fixed duration) and records each
request's outcome. Writes benchmarks/results/faults.json: per scenario the requests sent / succeeded / failed
(and how) and p99 latency; a top-level `summary` with the issue's target numbers.

    python -m benchmarks.faults                 # everything (about 6 minutes on two cores)
    python -m benchmarks.faults --only overload_3x slowloris --duration-s 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

if __package__ in (None, ""):  # run as a file: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    REPO,
    Launch,
    child_env,
    free_port,
    parse_metrics,
    percentile,
    server_processes,
    triage_serve,
)

RESULTS = REPO / "benchmarks" / "results" / "faults.json"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]  # general_qa -> the 'fast' role
FAST_TIMEOUTS = {"connect_s": 0.5, "first_token_s": 1.0, "between_tokens_s": 1.0, "total_s": 3.0}


# -- processes ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A `triage sim-engine` or `triage serve` subprocess; `proc` is set while `running()` holds it."""

    name: str
    port: int
    launch: Launch
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the crash a scenario injects."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)


def sim_engine(workdir: Path, name: str, time_scale: float = 0.05, max_num_seqs: int = 64) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "server.cli", "sim-engine", "--name", name, "--port", str(port)]
    argv += ["--shape", "qwen2.5-1.5b", "--gpu", name, "--time-scale", str(time_scale)]
    argv += ["--max-num-seqs", str(max_num_seqs), "--default-output-tokens", "16"]
    launch = Launch(argv, f"http://127.0.0.1:{port}/health", f"engine-{name}", log_path=workdir / f"{name}.log")
    return Server(name, port, launch)


def model_entry(engine: Server, roles: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": engine.name,
        "roles": roles,
        "endpoints": [f"{engine.base}/v1"],
        "context_length": 8192,
        "timeouts": FAST_TIMEOUTS,
        **extra,
    }


def router(workdir: Path, config: dict[str, Any]) -> Server:
    port = free_port()
    config = {**config, "server": {"port": port, "log_level": "error", **config.get("server", {})}}
    path = workdir / f"triage-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = triage_serve(path)
    log_path = workdir / f"router-{port}.log"
    # cwd: relative store paths (triage.db) land in the scenario's folder
    return Server(
        "router", port, Launch(argv, f"http://127.0.0.1:{port}/ready", "router", log_path=log_path, cwd=workdir)
    )


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    """Start the servers, wait until each answers, stop them all on exit."""
    with server_processes(*(s.launch for s in servers)) as procs:
        for server, proc in zip(servers, procs, strict=True):
            server.proc = proc
        yield


# -- load ----------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    stream: bool
    status: int  # HTTP status; 0 = transport error
    latency_s: float
    started: bool = False  # a stream delivered a data event before anything went wrong
    stream_error: str | None = None  # error type of an in-band SSE error event
    done: bool = False  # a stream ended with [DONE]
    model: str = ""


async def one_request(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Outcome:
    stream = bool(body.get("stream"))
    t0 = time.perf_counter()
    try:
        async with session.post(url, json=body, headers=headers) as r:
            out = Outcome(stream, r.status, 0.0, model=r.headers.get("x-triage-model", ""))
            if not stream or r.status != 200:
                await r.read()
            else:
                buffer = b""
                async for chunk in r.content.iter_any():
                    buffer += chunk
                    while b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        data = event.removeprefix(b"data: ")
                        if data == b"[DONE]":
                            out.done = True
                        elif data.startswith(b'{"error"'):
                            out.stream_error = json.loads(data)["error"]["type"]
                        elif out.stream_error is None:
                            out.started = True
    except (aiohttp.ClientError, TimeoutError) as exc:
        out = Outcome(stream, 0, 0.0, stream_error=type(exc).__name__)
    out.latency_s = time.perf_counter() - t0
    return out


async def run_load(
    url: str,
    make_body: Any,
    clients: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    events: list[tuple[float, Any]] | None = None,
) -> list[Outcome]:
    """`clients` closed-loop clients for `duration_s`; `events` are (at_s, callable) fired on schedule."""
    outcomes: list[Outcome] = []
    stop_at = time.monotonic() + duration_s
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client(i: int) -> None:
            n = 0
            while time.monotonic() < stop_at:
                outcomes.append(await one_request(session, url, make_body(i, n), headers))
                n += 1

        async def scheduler() -> None:
            t0 = time.monotonic()
            for at_s, action in events or []:
                await asyncio.sleep(max(0.0, t0 + at_s - time.monotonic()))
                result = action()
                if asyncio.iscoroutine(result):
                    await result

        await asyncio.gather(scheduler(), *(client(i) for i in range(clients)))
    return outcomes


def p99_ms(values: list[float]) -> float:
    return round(percentile(values, 99) * 1e3, 1) if values else 0.0


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """sent / succeeded / failed (and how) / p99, with streams split by whether they had started."""
    ok = [o for o in outcomes if o.status == 200 and (not o.stream or (o.done and o.stream_error is None))]
    how: Counter[str] = Counter()
    for o in outcomes:
        if o in ok:
            continue
        if o.status != 200:
            how[f"{'stream' if o.stream else 'nonstream'}_http_{o.status}"] += 1
        elif o.started:
            how[f"stream_error_after_start_{o.stream_error}"] += 1
        else:
            how[f"stream_error_before_start_{o.stream_error}"] += 1
    return {
        "sent": len(outcomes),
        "succeeded": len(ok),
        "failed": len(outcomes) - len(ok),
        "failed_how": dict(how),
        "failed_nonstream": sum(1 for o in outcomes if not o.stream and o.status != 200),
        "failed_prestart_streams": sum(1 for o in outcomes if o.stream and (o.status != 200 or not o.started)),
        "streams_broken_after_start": sum(1 for o in outcomes if o.stream and o.started and o.stream_error),
        "streams_never_ended": sum(1 for o in outcomes if o.stream and o.status == 200 and not o.done),
        "p99_latency_ms": p99_ms([o.latency_s for o in outcomes]),
        "p99_latency_ms_succeeded": p99_ms([o.latency_s for o in ok]),
        "served_by": dict(Counter(o.model for o in ok)),
    }


def mixed_body(max_tokens: int = 16) -> Any:
    def make(i: int, n: int) -> dict[str, Any]:
        return {"model": "auto", "messages": QUESTION, "max_tokens": max_tokens, "stream": (i + n) % 2 == 1}

    return make


async def set_faults(engine: Server, **faults: Any) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{engine.base}/sim/faults", json=faults) as r:
        r.raise_for_status()


# -- scenarios -------------------------------------------------------------------------------------------------


async def with_pair(
    workdir: Path,
    args: argparse.Namespace,
    fault: Any,
    clients: int = 12,
    stream_share_body: Any = None,
    router_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Two eligible models (primary preferred for the prompt, backup), a fault on primary mid-run."""
    primary, backup = sim_engine(workdir, "primary"), sim_engine(workdir, "backup")
    config = {"models": [model_entry(primary, ["fast"]), model_entry(backup, ["chat"])], **(router_extra or {})}
    gateway = router(workdir, config)
    with running(primary, backup, gateway):
        outcomes = await run_load(
            f"{gateway.base}/v1/chat/completions",
            stream_share_body or mixed_body(),
            clients,
            args.duration_s,
            events=[(args.duration_s / 3, lambda: fault(primary))],
        )
    return summarize(outcomes)


async def engine_killed(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    return await with_pair(workdir, args, Server.kill)


async def engine_hangs(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    return await with_pair(workdir, args, lambda e: set_faults(e, hang=True))


async def engine_5xx(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    return await with_pair(workdir, args, lambda e: set_faults(e, error_rate=0.2))


async def drops_mid_stream(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    def streams(i: int, n: int) -> dict[str, Any]:
        return {"model": "auto", "messages": QUESTION, "max_tokens": 24, "ignore_eos": True, "stream": True}

    return await with_pair(workdir, args, lambda e: set_faults(e, drop_mid_stream_rate=0.2), stream_share_body=streams)


async def overload(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Capacity 16 requests in flight (router and model caps); 48 closed-loop clients = 3x."""
    capacity = 16
    engine = sim_engine(workdir, "only", time_scale=0.5, max_num_seqs=capacity)
    config = {
        "models": [
            model_entry(engine, ["chat", "fast"], max_in_flight=capacity, timeouts={"first_token_s": 10, "total_s": 20})
        ],
        "server": {"max_in_flight": capacity, "admission_wait_s": 0.2, "max_waiting": capacity},
    }
    gateway = router(workdir, config)
    rss_mb: list[float] = []
    with running(engine, gateway):
        assert gateway.proc is not None
        router_proc = gateway.proc
        proc = psutil.Process(router_proc.pid)

        async def sample() -> None:
            while router_proc.poll() is None and not done.is_set():
                rss_mb.append(proc.memory_info().rss / 2**20)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.25)

        done = asyncio.Event()
        sampler = asyncio.create_task(sample())
        outcomes = await run_load(
            f"{gateway.base}/v1/chat/completions", mixed_body(max_tokens=32), 3 * capacity, args.duration_s * 2
        )
        done.set()
        await sampler
    result = summarize(outcomes)
    statuses = Counter(o.status for o in outcomes)
    third = max(1, len(rss_mb) // 3)
    result.update(
        capacity=capacity,
        clients=3 * capacity,
        statuses={str(k): v for k, v in statuses.items()},
        only_429_or_success=set(statuses) <= {200, 429} and result["streams_never_ended"] == 0,
        rss_mb={
            "start": round(rss_mb[0], 1),
            "max": round(max(rss_mb), 1),
            "end": round(rss_mb[-1], 1),
            "mean_first_third": round(sum(rss_mb[:third]) / third, 1),
            "mean_last_third": round(sum(rss_mb[-third:]) / third, 1),
            "samples": len(rss_mb),
        },
    )
    return result


async def router_sigkill(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Keys mode: each answered request books a usage row; SIGKILL mid-load, then count rows in the file."""
    db = workdir / "sigkill.db"
    created = subprocess.run(
        [sys.executable, "-m", "server.cli", "keys", "--db", str(db), "create", "bench"],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    key = json.loads(created.stdout)["key"]
    engine = sim_engine(workdir, "only")
    gateway = router(
        workdir, {"models": [model_entry(engine, ["chat", "fast"])], "auth": {"mode": "keys", "db": str(db)}}
    )
    acked = [0]
    with running(engine, gateway):
        assert gateway.proc is not None
        router_proc = gateway.proc

        auth = {"authorization": f"Bearer {key}"}  # /metrics needs a key when keys are required

        async def poll_acked() -> None:
            async with aiohttp.ClientSession() as session:
                while router_proc.poll() is None:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(f"{gateway.base}/metrics", headers=auth) as r:
                            committed = parse_metrics(await r.text()).get("triage_usage_committed_rows_total", 0.0)
                            acked[0] = max(acked[0], int(committed))
                    await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll_acked())
        kill_at_s = args.duration_s * 0.6

        def kill() -> None:
            router_proc.send_signal(signal.SIGKILL)

        def body(i: int, n: int) -> dict[str, Any]:
            return {"model": "auto", "messages": QUESTION, "max_tokens": 4}

        outcomes = await run_load(
            f"{gateway.base}/v1/chat/completions",
            body,
            16,
            kill_at_s + 0.05,
            headers={"authorization": f"Bearer {key}"},
            events=[(kill_at_s, kill)],
        )
        router_proc.wait(10)
        await poller
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM key_usage").fetchone()[0]
    answered = sum(1 for o in outcomes if o.status == 200)
    return {
        **summarize(outcomes),
        "answered_200": answered,
        "acknowledged_committed": acked[0],
        "rows_in_store_after_kill": rows,
        "lost_committed_records": max(0, acked[0] - rows),
        "answered_but_not_yet_committed_at_kill": max(0, answered - rows),
    }


PLANTED = [
    "Please email maria.rossi@example.org the contract draft.",
    "My phone is +44 20 7946 0958, call after 5.",
    "Use card 4111 1111 1111 1111 exp 09/28 for the booking.",
    "Refund to IBAN GB82 WEST 1234 5698 7654 32.",
    "Deploy with AWS key AKIAIOSFODNN7EXAMPLE and region eu-west-1.",
    "Why does git reject ghp_" + "A1b2C3" * 6 + " as a token?",
    "Fix this: client = OpenAI(api_key='sk-proj-" + "Xy9" * 12 + "')",
    "Our Slack bot uses xoxb-1234-5678-" + "abcd" * 6 + "; it fails.",
    "Decode eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTl9.c2lnbmF0dXJlX2hlcmVfeHl6 for me",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----\nIs this key valid?",
    "config: password = 'S3cure!Passw0rd'",
    "Contact jan.de.vries@bedrijf.nl or 06-1234-5678.",
    "Card 5500 0000 0000 0004 was declined",
    "Pay NL91 ABNA 0417 1643 00 please",
    "Stripe key sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc" + " leaked?",
    "Google key AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
]


async def planted_secrets(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Remote allowed everywhere; each planted prompt sent three ways. Count what reached the remote engine."""
    local, remote = sim_engine(workdir, "local"), sim_engine(workdir, "cloud")
    config = {
        "models": [
            model_entry(local, ["chat", "fast", "code"]),
            model_entry(remote, ["chat", "fast", "code"], remote=True, profile={"usd_per_1m_tokens": 2.0}),
        ],
        "policy": {"allow_remote": True},
    }
    gateway = router(workdir, config)
    url = f"{gateway.base}/v1/chat/completions"

    async def remote_served(session: aiohttp.ClientSession) -> int:
        async with session.get(f"{remote.base}/sim/state") as r:
            return int(sum((await r.json())["request_success_total"].values()))

    with running(local, remote, gateway):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            control = await one_request(session, url, {"model": "cloud", "max_tokens": 2, "messages": QUESTION})
            before = await remote_served(session)
            statuses: Counter[str] = Counter()
            for text in PLANTED:
                messages = [{"role": "user", "content": text}]
                for style, body in (
                    ("remote_only_allow_list", {"model": "auto", "route": {"models": ["cloud"], "allow_remote": True}}),
                    ("named_remote", {"model": "cloud"}),
                    ("auto_remote_allowed", {"model": "auto", "route": {"allow_remote": True}}),
                ):
                    for stream in (False, True):
                        out = await one_request(
                            session, url, {**body, "messages": messages, "max_tokens": 2, "stream": stream}
                        )
                        statuses[f"{style}_{out.status}"] += 1
            after = await remote_served(session)
    return {
        "prompts": len(PLANTED),
        "requests": len(PLANTED) * 6,
        "statuses": dict(statuses),
        "control_clean_prompt_reached_remote": control.status == 200 and control.model == "cloud",
        "planted_secrets_sent_remote": after - before,
    }


def schemathesis_run(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    report = workdir / "fuzz.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/server/test_fuzz_openapi.py"],
        env=child_env({"TRIAGE_FUZZ_REPORT": str(report)}),
        cwd=REPO,
        capture_output=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {"cases": 0, "5xx": -1}
    result["pytest_exit_code"] = done.returncode
    return result


SCENARIOS = {
    "engine_killed": engine_killed,
    "engine_hangs": engine_hangs,
    "engine_5xx_20pct": engine_5xx,
    "drops_mid_stream_20pct": drops_mid_stream,
    "overload_3x": overload,
    "router_sigkill": router_sigkill,
    "planted_secrets": planted_secrets,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=8.0, help="load per scenario (overload: twice)")
    from benchmarks.attacks import ATTACKS, attack_summary  # not at the top: attacks.py imports this module
    from benchmarks.privacy_guard import privacy_summary
    from models.data import DEFAULT_PROMPTS

    scenarios = {**SCENARIOS, **ATTACKS}
    parser.add_argument(
        "--only", nargs="*", choices=[*scenarios, "schemathesis", "privacy_guard"], help="run these only"
    )
    parser.add_argument("--out", default=str(RESULTS), help="results JSON")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="privacy_guard's ordinary prompts")
    args = parser.parse_args(argv)
    chosen = args.only or [*scenarios, "schemathesis", "privacy_guard"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="triage-faults-") as tmp:
        for name in chosen:
            t0 = time.monotonic()
            if name == "schemathesis":
                results[name] = schemathesis_run(Path(tmp), args)
            elif name == "privacy_guard":
                results[name] = privacy_summary(args.prompts)
            else:
                results[name] = asyncio.run(scenarios[name](Path(tmp), args))
            results[name]["wall_s"] = round(time.monotonic() - t0, 1)
            print(name, json.dumps(results[name]), flush=True)
    killed = results.get("engine_killed", {})
    summary = {
        "failed_nonstream_engine_killed": killed.get("failed_nonstream"),
        "failed_prestart_streams_engine_killed": killed.get("failed_prestart_streams"),
        "schemathesis_cases": results.get("schemathesis", {}).get("cases"),
        "schemathesis_5xx": results.get("schemathesis", {}).get("5xx"),
        "planted_secrets_sent_remote": results.get("planted_secrets", {}).get("planted_secrets_sent_remote"),
        "lost_committed_records": results.get("router_sigkill", {}).get("lost_committed_records"),
        "overload_only_429_or_success": results.get("overload_3x", {}).get("only_429_or_success"),
        "overload_rss_mb": results.get("overload_3x", {}).get("rss_mb"),
        **attack_summary(results),
        "privacy_evasions_sent_remote": results.get("privacy_guard", {}).get("privacy_evasions_sent_remote"),
        "privacy_false_positive_rate": results.get("privacy_guard", {}).get("privacy_false_positive_rate"),
    }
    out = {
        "summary": summary,
        "scenarios": results,
        "setup": {
            "duration_s": args.duration_s,
            "cpu_count": os.cpu_count(),
            "host": "127.0.0.1 only",
            "engines": "triage sim-engine subprocesses (qwen2.5-1.5b preset, time_scale 0.05)",
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
