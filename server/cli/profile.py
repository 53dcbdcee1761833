"""`triage profile --config FILE [--write]`: measure each local engine's speed and write it into the config.

Through each engine's OpenAI API (streamed /v1/completions): base TTFT (a tiny prompt, one token), prefill rate
(the TTFT of a long prompt minus the tiny one's), single-sequence decode rate (time between streamed tokens),
and the engine's output rate with `--concurrency` requests in flight (written as peak_decode_tok_per_s). With
`--write` the numbers replace the `profile:` fields of each model in the YAML file, line by line, so comments
and layout survive. Every loop is bounded in count and time. Knows nothing about routing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

LONG_PROMPT_WORDS = 1500  # ~1.5k tokens: long enough that prefill dominates its TTFT
DECODE_TOKENS = 128


class ProfileError(RuntimeError):
    """An engine did not answer as an OpenAI completions server, or the YAML cannot be patched."""


async def _stream(
    client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int, timeout_s: float
) -> tuple[float, list[float]]:
    """(TTFT s, arrival time of every streamed chunk) of one streamed completion."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
        "temperature": 0,
    }
    t0 = time.perf_counter()
    arrivals: list[float] = []
    async with client.stream("POST", url + "/completions", json=body, timeout=timeout_s) as response:
        if response.status_code != 200:
            raise ProfileError(f"{url}: HTTP {response.status_code} {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append(time.perf_counter())
    if not arrivals:
        raise ProfileError(f"{url}: the stream carried no tokens")
    return arrivals[0] - t0, arrivals


async def measure(
    url: str, model: str, repeats: int, concurrency: int, timeout_s: float, api_key: str | None = None
) -> dict[str, float]:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(headers=headers, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        await _stream(client, url, model, "Hello", 2, timeout_s)  # warm-up
        short = [(await _stream(client, url, model, "Hello", 1, timeout_s))[0] for _ in range(repeats)]
        long_prompt = "word " * LONG_PROMPT_WORDS
        long = [(await _stream(client, url, model, long_prompt, 1, timeout_s))[0] for _ in range(repeats)]
        gaps: list[float] = []
        for _ in range(max(1, repeats // 2)):
            _, arrivals = await _stream(client, url, model, "Count:", DECODE_TOKENS, timeout_s)
            gaps.extend(b - a for a, b in itertools.pairwise(arrivals))
        t0 = time.perf_counter()
        runs = await asyncio.gather(
            *(_stream(client, url, model, "Count:", DECODE_TOKENS, timeout_s) for _ in range(concurrency))
        )
        wall_s = time.perf_counter() - t0
    base_s = statistics.median(short)
    prefill_s = max(1e-4, statistics.median(long) - base_s)
    return {
        "base_ttft_ms": round(base_s * 1e3, 2),
        "prefill_tok_per_s": round(LONG_PROMPT_WORDS / prefill_s, 0),
        "decode_tok_per_s": round(1.0 / statistics.median(gaps), 1) if gaps else 0.0,
        "peak_decode_tok_per_s": round(sum(len(a) for _, a in runs) / wall_s, 0),
    }


def patch_profile(text: str, model: str, values: dict[str, float]) -> str:
    """`text` with `values` written into model `model`'s block-style `profile:` mapping (created if absent)."""
    lines = text.splitlines(keepends=True)
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if re.match(
                rf"^(\s*)- name:\s*['\"]?{re.escape(model)}['\"]?\s*"
                r"(#.*)?$",
                line,
            )
        ),
        None,
    )
    if start is None:
        raise ProfileError(f"model '{model}' not found as a '- name: {model}' line")
    item_indent = len(lines[start]) - len(lines[start].lstrip()) + 2  # keys of the list item
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) >= item_indent):
        end += 1
    profile = next((i for i in range(start, end) if re.match(r"^\s*profile:\s*(#.*)?$", lines[i])), None)
    if profile is None:
        if any(re.match(r"^\s*profile:", lines[i]) for i in range(start, end)):
            raise ProfileError(f"model '{model}': a flow-style profile mapping cannot be patched; make it block style")
        pad = " " * item_indent
        block = [f"{pad}profile:\n", *(f"{pad}  {k}: {v}\n" for k, v in values.items())]
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        return "".join(lines[:end] + block + lines[end:])
    key_indent = item_indent + 2
    p_end = profile + 1
    while p_end < end and (not lines[p_end].strip() or len(lines[p_end]) - len(lines[p_end].lstrip()) >= key_indent):
        p_end += 1
    for key, value in values.items():
        pattern = re.compile(rf"^{' ' * key_indent}{key}:.*$")
        hit = next((i for i in range(profile + 1, p_end) if pattern.match(lines[i].rstrip("\n"))), None)
        new = f"{' ' * key_indent}{key}: {value}\n"
        if hit is None:
            lines.insert(profile + 1, new)
            p_end += 1
        else:
            lines[hit] = new
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage profile", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config whose local models are measured")
    parser.add_argument("--models", help="comma-separated subset of model names")
    parser.add_argument("--repeats", type=int, default=5, help="samples per TTFT measurement (1-50)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight for the peak rate (1-512)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per request")
    parser.add_argument("--write", action="store_true", help="write the numbers back into the config file")
    args = parser.parse_args(argv)
    from ..config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"triage profile: config error: {exc}", file=sys.stderr)
        return 2
    wanted = set(args.models.split(",")) if args.models else None
    repeats, concurrency = min(max(args.repeats, 1), 50), min(max(args.concurrency, 1), 512)
    results: dict[str, dict[str, float]] = {}
    for model in config.models:
        if model.remote or (wanted is not None and model.name not in wanted):
            continue
        if not model.endpoints:  # a launch block with port: auto; only the running `triage serve` knows the port
            print(f"triage profile: {model.name}: no fixed endpoint; set launch.port", file=sys.stderr)
            return 2
        try:
            results[model.name] = asyncio.run(
                measure(model.endpoints[0], model.upstream_name, repeats, concurrency, args.timeout, model.api_key)
            )
        except (httpx.HTTPError, ProfileError) as exc:
            print(f"triage profile: {model.name}: {exc}; is the engine running?", file=sys.stderr)
            return 1
        print(json.dumps({"model": model.name, **results[model.name]}), flush=True)
    if args.write and results:
        path = Path(args.config)
        text = path.read_text()
        for name, values in results.items():
            text = patch_profile(text, name, values)
        path.write_text(text)
        load_config(path)  # the patched file must still load
        print(f"wrote {len(results)} profile(s) into {path}")
    return 0
