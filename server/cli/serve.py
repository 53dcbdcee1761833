"""`triage serve --config FILE`: load the config, build the app and serve it until SIGTERM/SIGINT.

Engines of kinds that Triage runs itself (`launch:` blocks, `kind: simulated`) start and stop with it; the
app's lifespan does that. Knows nothing about routing.
"""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage serve", description="Run the OpenAI-compatible router.")
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    parser.add_argument("--host", help="bind address (overrides server.host)")
    parser.add_argument("--port", type=int, help="port (overrides server.port)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..app import build_app
    from ..config import ConfigError, load_config
    from ..connections import uvicorn_options
    from ..shutdown import serve

    try:
        config = load_config(args.config)
        if args.host:
            config.server.host = args.host
        if args.port:
            config.server.port = args.port
        app = build_app(config)
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
        options=uvicorn_options(config.server),
    )
    return 0
