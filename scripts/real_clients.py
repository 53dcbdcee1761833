"""Runs the real coding CLIs against the demo: OpenAI's Codex CLI over the Responses API and Anthropic's Claude Code
over the Messages API, one non-interactive task each, with tools unable to touch the machine.

    python scripts/real_clients.py [--prefix DIR] [--out FILE]

1. `npm install --prefix DIR @openai/codex @anthropic-ai/claude-code` (skipped when both are there already);
2. `triage serve` with configs/demo.yaml (simulated engines, no GPU) on free ports, its stores in a temporary dir;
3. `codex exec --sandbox read-only` with a custom provider (`wire_api = "responses"`, base_url Triage's /v1) in a
   temporary CODEX_HOME;
4. `claude -p --tools ""` (no tools at all) with ANTHROPIC_BASE_URL set to Triage and CLAUDE_CODE_MAX_OUTPUT_TOKENS
   (Claude Code asks for 32-64k output tokens by default, more than the demo models' 32k context holds);
5. each CLI runs in an empty temporary directory with HOME there too, so nothing of this machine's is read or
   written. A client passes when it exits 0, prints the simulated engine's answer ("[simulated]" filler), and
   Triage's /metrics counts an `ok` request on the client's route.

Prints one JSON line (client versions, each client's command, exit status, what passed) and writes it to --out if
given; exits 1 when a client failed, 2 when the CLIs could not be installed. Every step has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["@openai/codex", "@anthropic-ai/claude-code"]
TASK = "Reply with one word: hello."
INSTALL_TIMEOUT_S = 600
CLIENT_TIMEOUT_S = 180
START_TIMEOUT_S = 60
OUTPUT_TAIL_CHARS = 400


class InstallFailed(RuntimeError):
    """npm could not install the CLIs (no npm, no registry, or a failed install)."""


def install(prefix: Path) -> dict[str, Path]:
    """The CLIs' executables under `prefix`, installed from npm first when missing."""
    bins = {"codex": prefix / "node_modules/.bin/codex", "claude": prefix / "node_modules/.bin/claude"}
    if all(b.exists() for b in bins.values()):
        return bins
    npm = shutil.which("npm")
    if npm is None:
        raise InstallFailed("npm is not on PATH (install Node.js 18+ to run the real CLIs)")
    prefix.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *PACKAGES]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InstallFailed(f"npm install took longer than {INSTALL_TIMEOUT_S} s") from None
    if done.returncode != 0 or not all(b.exists() for b in bins.values()):
        raise InstallFailed(f"npm install failed ({done.returncode}): {done.stderr[-OUTPUT_TAIL_CHARS:]}")
    return bins


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config(workdir: Path) -> tuple[Path, int]:
    """configs/demo.yaml on free ports, its audit store in `workdir`: (the config's path, Triage's port)."""
    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    port = free_port()
    config["server"]["port"] = port
    config["policy"]["store"] = str(workdir / "triage.db")
    for model in config["models"]:
        model["endpoints"] = [f"http://127.0.0.1:{free_port()}/v1"]
    path = workdir / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port


def wait_healthy(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"triage serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"triage serve was not ready within {START_TIMEOUT_S} s")


def ok_requests(base_url: str, endpoint: str) -> float:
    """Requests on `endpoint` (responses, messages) that Triage booked as answered in full."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    pattern = re.compile(rf'^triage_requests_total\{{endpoint="{endpoint}",model="[^"]*",status="ok"\}} (\S+)$', re.M)
    return sum(float(n) for n in pattern.findall(text))


def version(binary: Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or done.stderr.strip()


def run_client(
    name: str, command: list[str], env: dict[str, str], cwd: Path, base_url: str, endpoint: str
) -> dict[str, Any]:
    before = ok_requests(base_url, endpoint)
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
        )
        status, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        status, out = None, f"timed out after {CLIENT_TIMEOUT_S} s: {exc.stdout!r}"
    routed = ok_requests(base_url, endpoint) - before
    answered = "[simulated]" in out
    return {
        "client": name,
        "command": shlex.join(command),
        "exit_status": status,
        "answer_seen": answered,
        "ok_requests_on_route": routed,
        "seconds": round(time.monotonic() - t0, 1),
        "passed": status == 0 and answered and routed >= 1,
        "output_tail": out[-OUTPUT_TAIL_CHARS:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--prefix",
        type=Path,
        default=Path.home() / ".cache/triage/real-clients",
        help="npm prefix the CLIs are installed into (reused when present)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    try:
        bins = install(args.prefix)
    except InstallFailed as exc:
        print(json.dumps({"installed": False, "reason": str(exc)}))
        return 2
    with tempfile.TemporaryDirectory(prefix="triage-real-clients-") as tmp:
        workdir = Path(tmp)
        config, port = demo_config(workdir)
        base_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        server = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "serve.log").open("w"),
        )
        try:
            wait_healthy(base_url, server)
            results = run_both(bins, workdir, base_url)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    node = shutil.which("node")
    summary = {
        "installed": True,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, node {version(Path(node)) if node else '?'}",
        "versions": {name: version(b) for name, b in bins.items()},
        "task": TASK,
        "clients": results,
        "passed": all(r["passed"] for r in results),
    }
    line = json.dumps(summary)
    print(line)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


def run_both(bins: dict[str, Path], workdir: Path, base_url: str) -> list[dict[str, Any]]:
    home, cwd = workdir / "home", workdir / "empty"
    home.mkdir()
    cwd.mkdir()
    # Only what the CLIs need: no key of this machine's, no config of the user's.
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "NO_COLOR": "1"}
    codex_home = home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        'model = "gpt-5-codex"\nmodel_provider = "triage"\n\n[model_providers.triage]\nname = "Triage"\n'
        f'base_url = "{base_url}/v1"\nwire_api = "responses"\n'
    )
    codex = [str(bins["codex"]), "exec", "--sandbox", "read-only", "--skip-git-repo-check", "--color", "never", TASK]
    claude = [str(bins["claude"]), "-p", TASK, "--tools", "", "--strict-mcp-config", "--no-session-persistence"]
    claude_env = {
        **base_env,
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "unused-in-open-mode",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "4096",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return [
        run_client("codex", codex, {**base_env, "CODEX_HOME": str(codex_home)}, cwd, base_url, "responses"),
        run_client("claude", claude, claude_env, cwd, base_url, "messages"),
    ]


if __name__ == "__main__":
    sys.exit(main())
