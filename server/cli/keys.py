"""`triage keys create|list|revoke`: manage API keys in the store file (`server.auth.keys.KeyStore`).

Prints a new key once, at creation; lists and revokes keys by id. Knows nothing about HTTP or how limits are
enforced.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..auth.keys import KeyStore, KeyStoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage keys", description="Manage Triage API keys.")
    parser.add_argument("--db", default="triage.db", help="the store file (auth.db in the config)")
    commands = parser.add_subparsers(dest="action", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("name", help="who or what the key is for")
    create.add_argument("--models", help="comma-separated allowed models (default: all)")
    create.add_argument("--allow-remote", action="store_true", help="may use remote providers")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute (prompt + requested output)")
    create.add_argument("--daily-tokens", type=int, help="local tokens per UTC day")
    create.add_argument("--daily-usd", type=float, help="remote spend per UTC day, dollars")
    create.add_argument("--admin", action="store_true", help="may open the operator console (/dashboard)")
    listing = commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = commands.add_parser("revoke", help="revoke a key by id; servers notice within seconds")
    revoke.add_argument("id", help="key id, e.g. key_3f9a1c2b")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = KeyStore.open(args.db)
    except KeyStoreError as exc:
        print(f"triage keys: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "create":
            models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
            key, record = store.create(
                args.name,
                models=models,
                allow_remote=args.allow_remote,
                rpm=args.rpm,
                tpm=args.tpm,
                daily_tokens=args.daily_tokens,
                daily_usd=args.daily_usd,
                admin=args.admin,
            )
            print(json.dumps({"id": record.id, "name": record.name, "key": key, "admin": record.admin}))
            print("store the key now: only its hash is kept", file=sys.stderr)
        elif args.action == "list":
            for r in store.list(include_revoked=args.all):
                print(
                    json.dumps(
                        {
                            "id": r.id,
                            "name": r.name,
                            "created": round(r.created),
                            "revoked": r.revoked is not None,
                            "models": sorted(r.models) if r.models is not None else None,
                            "allow_remote": r.allow_remote,
                            "rpm": r.rpm,
                            "tpm": r.tpm,
                            "daily_tokens": r.daily_tokens,
                            "daily_usd": r.daily_usd,
                            "admin": r.admin,
                        }
                    )
                )
        elif not store.revoke(args.id):
            print(f"triage keys: no active key with id {args.id} (see `triage keys list --all`)", file=sys.stderr)
            return 1
    finally:
        store.close()
    return 0
