"""Simulated vLLM engines for tests, demos and benchmarks on CPU-only machines.

Modules, one job each: `spec` (settings), `latency` (calibrated step/TTFT model), `gpu` (shared-GPU
contention), `sequence` and `engine` (continuous batching, no HTTP), `clock` (what the engine steps on: the
asyncio loop, or a `VirtualClock` for discrete-event benchmarks), `text` and `protocol` (token counts, OpenAI
bytes), `stats` and `metrics` (vLLM-named Prometheus metrics), `app` (raw ASGI), `config` (YAML specs) and
`runner` (uvicorn servers in one loop). `triage sim-engine` (server/cli/), the gateway's `simulated` engine kind
(server/backends/simulated.py) and benchmarks/simrun.py run it; nothing else in the gateway imports this
package. Importing this package imports nothing.
"""
