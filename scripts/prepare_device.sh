#!/usr/bin/env bash
# Everything scripts/gpu_device.sh needs on the GPU machine, prepared here on the CPU machine in one command.
# The device has no internet and receives only the checkout plus the ignored paths a call carries, so the
# vLLM bundle, Triage's few wheels beyond the device image, the data file and the fp16 encoder are built here.
#   bash scripts/prepare_device.sh classifier   # .vllm/minilm-fp16 (46 MB) + .vllm/data + .whl (~10 s)
#   bash scripts/prepare_device.sh vllm         # .vllm bundle + .vllm/bin + .vllm/data + .whl (~4 min)
# Each step is skipped when its output already exists. Then one device call, as listed in gpu_device.sh.
set -euo pipefail
mode=${1:?usage: prepare_device.sh classifier|vllm}
cd "$(dirname "$0")/.."
SHARED=${TRIAGE_SHARED:-../shared}
PY=${PY:-.venv/bin/python}

wheels() {
    # the device image's Python is 3.12; these are what Triage imports beyond the image (+ the vLLM bundle)
    [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && return
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux1_x86_64 \
        -d .whl orjson==3.13.0 httptools==0.9.0 pytest-asyncio==1.5.0
}

data() {
    # ../shared does not travel to the device: the benchmarks' real prompt mix goes in .vllm/data (4.7 MB)
    mkdir -p .vllm/data
    cp "$SHARED/data/prompts_train.jsonl.gz" .vllm/data/
}

case "$mode" in
    classifier)
        # the fp32 encoder package (91 MB) is more than one call may carry (64 MiB); fp16 is 46 MB
        [ -f .vllm/minilm-fp16/model.safetensors ] ||
            PYTHONPATH=. "$PY" scripts/export_encoder_fp16.py .vllm/minilm-fp16
        data
        wheels
        echo 'next: run(command="bash scripts/gpu_device.sh classifier",' \
            'carry=[".vllm/minilm-fp16", ".vllm/data", ".whl"])' ;;
    vllm)
        ls .vllm/vllm026-*.tar.xz >/dev/null 2>&1 || bash "$SHARED/device/build_vllm_bundle.sh" .vllm
        mkdir -p .vllm/bin
        cp "$SHARED"/device/*.sh "$SHARED"/device/*.py .vllm/bin/
        data
        wheels
        echo 'next: run(command="bash scripts/gpu_device.sh e2e|bench|frontier", carry=[".vllm/vllm026-a.tar.xz",' \
            '".vllm/vllm026-b.tar.xz", ".vllm/bin", ".vllm/data", ".whl"])' ;;
    *)
        echo "usage: prepare_device.sh classifier|vllm" >&2
        exit 2 ;;
esac
