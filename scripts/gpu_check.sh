#!/usr/bin/env bash
# The GPU check: every GPU measurement of Triage in ONE command that ends within 9 minutes (benchmarks/gpu_check.py
# says what runs, in what order, within which budgets). Whenever a GPU machine is at hand, run this first.
#
# On the CPU machine, once:   bash scripts/prepare_device.sh        (prints the size that travels and the call)
# in the checkout the device tool sends: the session's own, also when a helper calls it from a worktree.
# Then ONE device call:
#   run(command="bash scripts/gpu_check.sh", timeout_s=600,
#       carry=[".vllm/vllm026-a.tar.xz", ".vllm/vllm026-b.tar.xz", ".vllm/bin", ".vllm/data", ".vllm/minilm-shape",
#              ".whl"])
# $OUT gets summary.json, classifier.json, engines.json, e2e.json, throughput.json, replay.json and results.tar.gz
# (logs, full result JSONs, PNGs): 7 files, each written as soon as its part ends.
#
# Here, without a GPU:          bash scripts/gpu_check.sh --dry-run   (simulated vLLM engines, the CPU classifier;
#                               under 2 minutes; tests/gpu/test_gpu_check.py runs it in CI)
# Other flags go to benchmarks/gpu_check.py (--deadline-s, --inject-failure STEP, --min-s STEP=S, --base DIR).
set -uo pipefail
t0=$SECONDS
cd "$(dirname "$0")/.."
dry=0
for arg in "$@"; do [ "$arg" = --dry-run ] && dry=1; done
OUT=${OUT:-/tmp/triage-gpu-check/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ "$dry" = 1 ]; then
    PY=${PYTHON:-.venv/bin/python}
    [ -x "$PY" ] || PY=python3
    deadline=240
else
    PY=python3   # the device image's Python, the one that holds torch
    # shellcheck source=/dev/null
    . .vllm/bin/vllm_device_env.sh .vllm   # unpacks the carried bundle into /tmp/site once per machine (~15 s)
    if [ "${VLLM_READY:-0}" != 1 ]; then
        echo "gpu_check.sh: no vLLM bundle on this machine; carry .vllm/vllm026-{a,b}.tar.xz (prepare_device.sh)" >&2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/triage-site \
        .whl/*.whl || echo "gpu_check.sh: the carried wheels did not install (.whl)" >&2
    export PYTHONPATH="$PWD:/tmp/triage-site:${PYTHONPATH:-}"
    deadline=540
fi
# The device call may run 600 s: the check starts no step past its deadline (9 minutes from here), a hard alarm
# cuts a step 15 s after it, stopping the engines takes at most 20 s more; `timeout` is the last resort.
left=$((deadline - (SECONDS - t0)))
timeout --kill-after=5 $((left + 45)) "$PY" -m benchmarks.gpu_check --out "$OUT" --deadline-s "$left" "$@"
rc=$?
ls -l "$OUT"
exit $rc
