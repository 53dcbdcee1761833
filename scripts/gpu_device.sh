#!/usr/bin/env bash
# FIRST run scripts/gpu_check.sh (every GPU measurement in one call of 9 minutes). This script keeps the longer
# single benchmarks, each a call of its own of up to 10 minutes, for when a session has device time left after it.
# Single GPU checks of Triage on the lent GPU machine (the session's device `run` tool), from the repo root:
#   e2e    tests/gpu: Triage launches two dummy-weight vLLM engines, routes, streams, reads /metrics and NVML,
#          restarts a killed engine, shuts down clean (~5 min: two eager engine starts at once, one restart)
#   bench  benchmarks/gpu_throughput.py: Triage vs direct vLLM at concurrency 1..256 (~6 min)
#   classifier  tests/kernels + tests/models on the GPU (Triton kernels vs references, fused encoder, CUDA
#          graphs) and benchmarks/classifier.py (Triton vs eager vs torch.compile vs sentence-transformers); no vLLM
#          needed (~5 min). Carry .vllm/minilm-fp16, .vllm/data and .whl (scripts/prepare_device.sh classifier).
#   frontier  benchmarks/gpu_policy_frontier.py: static task routing vs Triage's presets on three engines sharing
#          the card (~9.5 min: three eager engine starts, then as many rates as fit in the call; JSON after each)
# Results land in $OUT (the device tool brings them back): logs, gpu_throughput.json/.png,
# gpu_policy_frontier.json/.png.
#
# Once, on the CPU machine, in the repo root (the device has no internet and gets only the checkout + carry):
#   bash scripts/prepare_device.sh vllm         # vLLM 0.26 bundle, device scripts, data, wheels (~4 min)
#   bash scripts/prepare_device.sh classifier   # fp16 encoder (46 MB; fp32 is over a call's carry) + wheels
# Then one device call per check:
#   run(command="bash scripts/gpu_device.sh e2e", timeout_s=600,
#       carry=[".vllm/vllm026-a.tar.xz", ".vllm/vllm026-b.tar.xz", ".vllm/bin", ".vllm/data", ".whl"])
#   run(command="bash scripts/gpu_device.sh bench", timeout_s=600, carry=[same list])
#   run(command="bash scripts/gpu_device.sh frontier", timeout_s=600, carry=[same list])
#   run(command="bash scripts/gpu_device.sh classifier", timeout_s=600,
#       carry=[".vllm/minilm-fp16", ".vllm/data", ".whl"])
set -euo pipefail
mode=${1:?usage: gpu_device.sh e2e|bench|frontier|classifier}
OUT=${OUT:-/tmp/triage-gpu-out}
mkdir -p "$OUT"

if [ "$mode" != classifier ]; then
    # shellcheck source=/dev/null
    . .vllm/bin/vllm_device_env.sh .vllm
    if [ "${VLLM_READY:-0}" != 1 ]; then
        echo "gpu_device.sh: the vLLM bundle is not on this machine; carry .vllm/vllm026-{a,b}.tar.xz" >&2
        exit 2
    fi
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/triage-site \
    .whl/*.whl
export PYTHONPATH="$PWD:/tmp/triage-site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv
  python3 -c 'import importlib.metadata as m; print("vllm", m.version("vllm"), "torch", m.version("torch"))'
} | tee "$OUT/gpu.txt"

case "$mode" in
    e2e)
        # pytest-asyncio is not on the machine and these tests are synchronous: silence its ini keys' warning
        python3 -m pytest tests/gpu -v -x -p no:cacheprovider -W ignore::pytest.PytestConfigWarning \
            2>&1 | tee "$OUT/gpu-e2e.log" ;;
    bench)
        python3 benchmarks/gpu_throughput.py --prompts .vllm/data/prompts_train.jsonl.gz --out-dir "$OUT" \
            2>&1 | tee "$OUT/gpu-bench.log" ;;
    frontier)
        # budget: the device call ends at 600 s; stop starting runs by 550 s from here, leaving time to shut down
        python3 -m benchmarks.gpu_policy_frontier --prompts .vllm/data/prompts_train.jsonl.gz --out-dir "$OUT" \
            --budget-s $((550 - SECONDS)) 2>&1 | tee "$OUT/gpu-frontier.log" ;;
    classifier)
        export TRIAGE_ENCODER="$PWD/.vllm/minilm-fp16"
        python3 -m pytest tests/kernels tests/models -v -p no:cacheprovider -W ignore::pytest.PytestConfigWarning \
            2>&1 | tee "$OUT/gpu-classifier-tests.log" || true
        python3 benchmarks/classifier.py --data .vllm/data/prompts_train.jsonl.gz --out "$OUT/classifier.json" \
            2>&1 | tee "$OUT/gpu-classifier-bench.log" ;;
    *)
        echo "usage: gpu_device.sh e2e|bench|frontier|classifier" >&2
        exit 2 ;;
esac
