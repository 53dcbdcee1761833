"""The `triage` command: `serve` runs the router; other subcommands hand their arguments to the module that
owns the job (simulated engines, training, evaluation). Heavy imports happen only inside the chosen command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module with main(argv) -> int, help)
DELEGATED: dict[str, tuple[str, str]] = {
    "sim-engine": ("server.sim.runner", "run simulated vLLM-like engines (OpenAI API, /metrics, faults)"),
    "keys": ("server.auth.keys", "create, list and revoke API keys (only their hashes are stored)"),
    "train-classifier": ("models.train_classifier", "train the task/complexity heads on labelled prompts"),
    "train-quality": ("models.train_quality", "train the per-model quality predictor on an outcomes file"),
    "eval-routing": ("models.eval_routing", "score learned routing against single models on outcomes"),
    "profile": ("server.policy.profile_cli", "measure engines' speed and write it into the config's profiles"),
    "decisions": ("server.policy.decisions_cli", "show the latest routing decisions from the audit log"),
}


def _serve(args: argparse.Namespace) -> int:
    from .app import build_app
    from .config import ConfigError, load_config
    from .shutdown import serve

    try:
        config = load_config(args.config)
        if args.host:
            config.server.host = args.host
        if args.port:
            config.server.port = args.port
        app = build_app(config, start_simulated=not args.no_simulated)
    except ConfigError as exc:
        print(f"triage: config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(
        app,
        host=config.server.host,
        port=config.server.port,
        log_level=config.server.log_level,
        drain_s=config.server.drain_s,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description="Route OpenAI requests to local LLMs.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the OpenAI-compatible router")
    serve.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    serve.add_argument("--host", help="bind address (overrides server.host)")
    serve.add_argument("--port", type=int, help="port (overrides server.port)")
    serve.add_argument(
        "--no-simulated", action="store_true", help="do not start simulated engines in-process (they run elsewhere)"
    )
    for name, (_, text) in DELEGATED.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        return int(module.main(argv[1:]))
    args = build_parser().parse_args(argv)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
