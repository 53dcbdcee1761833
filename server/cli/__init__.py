"""The `triage` command: one subcommand per module of this package, plus the training scripts of models/.

Each command module has `main(argv) -> int` and parses its own flags; the library code it drives lives where it
belongs (the router in `server/app.py`, API keys in `server/auth/`, simulated engines in `server/sim/`). A command
module is imported only when its command runs, so `triage keys` never loads the router or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {  # subcommand -> (module with main(argv) -> int, help)
    "serve": ("server.cli.serve", "run the OpenAI-compatible router"),
    "keys": ("server.cli.keys", "create, list and revoke API keys (only their hashes are stored)"),
    "profile": ("server.cli.profile", "measure engines' speed and write it into the config's profiles"),
    "decisions": ("server.cli.decisions", "show the latest routing decisions from the audit log"),
    "sim-engine": ("server.cli.sim_engine", "run simulated vLLM-like engines (OpenAI API, /metrics, faults)"),
    "train-classifier": ("models.train_classifier", "train the task/complexity heads on labelled prompts"),
    "train-quality": ("models.train_quality", "train the per-model quality predictor on an outcomes file"),
    "eval-routing": ("models.eval_routing", "score learned routing against single models on outcomes"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top level only: lists the commands (each command parses its own flags)."""
    parser = argparse.ArgumentParser(prog="triage", description="Route OpenAI requests to local LLMs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        return int(module.main(argv[1:]))
    build_parser().parse_args(argv)  # prints usage and exits: no command, an unknown one, or --help
    return 2
