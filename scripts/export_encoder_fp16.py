"""Write an fp16 copy of the classifier's encoder (config, tokenizer, safetensors) to a directory.

The fp32 all-MiniLM-L6-v2 weights (91 MB) exceed what one device call may carry (64 MiB); the fp16 copy is
45 MB, still too much beside the vLLM bundle: the GPU check uses it only when a call carries .vllm/minilm-fp16
(benchmarks/gpu_steps.py, prepare_encoder), and random weights in the same shape otherwise.

    python scripts/export_encoder_fp16.py .vllm/minilm-fp16
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from models.encoder import default_model_path


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    source = default_model_path()
    model = AutoModel.from_pretrained(source, torch_dtype=torch.float16)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    size_mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({size_mb:.0f} MB) from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
