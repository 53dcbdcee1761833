"""A stand-in for `vllm serve` backed by Triage's simulator, for the GPU check's dry run on a CPU machine.

    python tests/gpu/sim_vllm.py serve MODEL --port P --served-model-name NAME [any other vllm serve flag ...]

Triage's supervisor launches it exactly as it launches vLLM (the same argv, from a `launch.command`), and it
serves what the GPU tests read from a real engine: token-by-token streams of the asked length (`ignore_eos`),
usage, requests aborted when the client hangs up, vLLM's `/metrics` names (server/sim/). The latency preset is
the model folder's name (qwen2.5-1.5b, qwen2.5-0.5b, as scripts/make_dummy_model.py writes them). Flags the
simulator has no use for (memory shares, KV cache size, parsers, `--load-format`, `--enforce-eager`) are
ignored. Knows nothing about GPUs: the dry run's memory checks are skipped, not simulated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def sim_argv(argv: list[str]) -> list[str]:
    """`vllm serve` arguments -> `triage sim-engine` arguments (one engine on 127.0.0.1)."""
    from server.sim.spec import SHAPE_NAMES

    parser = argparse.ArgumentParser(prog="sim_vllm")
    parser.add_argument("subcommand", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    args, _ignored = parser.parse_known_args(argv)
    shape = Path(args.model).name
    if shape not in SHAPE_NAMES:
        parser.error(f"no latency preset for model folder {shape!r}; presets: {', '.join(SHAPE_NAMES)}")
    return [
        "--name",
        args.served_model_name,
        "--port",
        str(args.port),
        "--shape",
        shape,
        "--max-num-seqs",
        str(args.max_num_seqs),
        "--max-model-len",
        str(args.max_model_len),
        "--log-level",
        "info",
    ]


def main() -> int:
    from server.cli.sim_engine import main as sim_engine

    argv = sim_argv(sys.argv[1:])
    print("sim_vllm: triage sim-engine " + " ".join(argv), flush=True)
    return sim_engine(argv)


if __name__ == "__main__":
    sys.exit(main())
