"""`triage sim-engine`: run simulated vLLM-like engines (CPU only) until SIGINT/SIGTERM or `--run-for-s`.

Engines come from a YAML file (`sim_engines:` or a Triage config's `kind: simulated` models) or from flags for one
engine. Prints one line per engine once all listen. The simulator itself lives in server/sim/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from ..sim.config import SimConfigError, specs_from_yaml
from ..sim.runner import SimClusterError, serve_engines
from ..sim.spec import SHAPE_NAMES, FaultSpec, SimEngineSpec

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="triage sim-engine", description="Run simulated vLLM engines (CPU only) until SIGINT/SIGTERM."
    )
    src = p.add_argument_group("from a file")
    src.add_argument("--config", help="YAML with 'sim_engines:' or a Triage config with kind: simulated models")
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
