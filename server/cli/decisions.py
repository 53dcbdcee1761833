"""`triage decisions`: the latest routing decisions from the audit log, newest first.

Reads the SQLite store named by a config's `policy.store` (or `--db`); never writes. Knows nothing about routing.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage decisions", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML config whose policy.store is read")
    source.add_argument("--db", help="path of the SQLite store")
    parser.add_argument("--limit", type=int, default=20, help="how many decisions (newest first)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line, candidates included")
    args = parser.parse_args(argv)

    path = args.db
    if args.config:
        from ..config import ConfigError, load_config

        try:
            path = load_config(args.config).policy.store
        except ConfigError as exc:
            print(f"triage decisions: config error: {exc}", file=sys.stderr)
            return 2
        if not path:
            print("triage decisions: the config sets policy.store to null: no audit log", file=sys.stderr)
            return 2
    if not Path(path).exists():
        print(
            f"triage decisions: no store at {path}; start `triage serve` with the triage policy first", file=sys.stderr
        )
        return 2
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = conn.execute("SELECT * FROM decisions ORDER BY ts DESC LIMIT ?", (max(1, args.limit),))
    except sqlite3.Error as exc:
        print(f"triage decisions: {path} is not a Triage store ({exc})", file=sys.stderr)
        return 2
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    conn.close()
    for row in rows:
        if args.json:
            row["candidates"] = json.loads(row["candidates"])
            print(json.dumps(row))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["ts"]))
        flags = "".join(("E" if row["explored"] else "-", "O" if row["overflow"] else "-"))
        outcome = row["outcome"] or "open"
        latency = f"{row['latency_s']:.2f}s" if row["latency_s"] is not None else "-"
        print(
            f"{when}  {row['request_id'][:24]:<24} {row['category']:<24} {row['model']:<12} {flags} "
            f"{outcome:<5} {latency:>7}  {row['reason']}"
        )
    return 0
