"""Engine speeds as `triage profile` measures them, taken from simulated engines served over HTTP.

The policy under test must not be handed the simulator's constants: it gets what an operator's `triage
profile` run would write into its config. So each distinct engine shape is started as a real simulated engine
on 127.0.0.1 (server/sim/runner.py) and measured with the profile command's own protocol
(`measure()`: base TTFT, prefill rate, single-sequence decode rate, and the output rate with
`concurrency` streams in flight) over HTTP.

Two things are set for this 2-core box: the engine runs `time_scale` times slower than an H100 and the
measured times are divided back (rates multiplied), so that the box's own HTTP and event-loop cost (about a
millisecond per request, and 256 streams' worth of SSE events per step in the peak phase) does not swamp 5 ms
decode steps (at 8x the peak rate still varied from 8.3k to 12.1k tokens/s with the box's load); and
`concurrency` defaults to the engine's `max_num_seqs`, because the policy reads `peak_decode_tok_per_s` as the
rate at max_num_seqs (the command's own default of 32 would under-state it). Knows nothing about routing or the
workload.
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.cli.profile import measure
from server.sim.runner import serve_engines
from server.sim.spec import SimEngineSpec

PROFILE_FIELDS = ("base_ttft_ms", "prefill_tok_per_s", "decode_tok_per_s", "peak_decode_tok_per_s")


async def _measure(spec: SimEngineSpec, repeats: int, concurrency: int, timeout_s: float) -> dict[str, float]:
    cluster = await serve_engines([spec])
    try:
        return await measure(cluster.base_url(spec.name), spec.name, repeats, concurrency, timeout_s)
    finally:
        await cluster.stop()


def measure_shape(
    shape: str,
    max_num_seqs: int,
    time_scale: float = 16.0,
    repeats: int = 5,
    concurrency: int | None = None,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Profile fields of one engine shape (unscaled), plus how they were taken."""
    spec = SimEngineSpec(name=f"profile-{shape}", port=0, shape=shape, max_num_seqs=max_num_seqs, time_scale=time_scale)
    streams = concurrency or max_num_seqs
    raw = asyncio.run(_measure(spec, repeats, streams, timeout_s))
    return {
        "base_ttft_ms": round(raw["base_ttft_ms"] / time_scale, 2),
        "prefill_tok_per_s": round(raw["prefill_tok_per_s"] * time_scale, 0),
        "decode_tok_per_s": round(raw["decode_tok_per_s"] * time_scale, 1),
        "peak_decode_tok_per_s": round(raw["peak_decode_tok_per_s"] * time_scale, 0),
        "measured": {
            "protocol": "triage profile's measure() over HTTP (streamed /v1/completions)",
            "time_scale": time_scale,
            "repeats": repeats,
            "concurrency": streams,
            "raw": raw,
        },
    }
