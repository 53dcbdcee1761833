"""Triton kernels for Triage's prompt classifier (a BERT encoder), each with a plain-PyTorch reference.

Layout — one file per fused op, each holding a private ``@triton.jit`` kernel, its launcher, a ``*_ref`` and a
GPU-only ``bench_*``:

- ``layernorm``: bias + residual + LayerNorm;
- ``gelu``: bias + exact GELU;
- ``attention``: padded-batch multi-head attention straight from the packed QKV GEMM output;
- ``pool_head``: masked mean-pool + L2 normalise (+ linear head + softmax).

Use ``kernels.ops`` (Triton on CUDA or under ``TRITON_INTERPRET=1``, references elsewhere);
``kernels.dispatch`` holds the choice and its test override. Importing this package touches no GPU and
launches nothing.

This package knows nothing about routing, tokenisation or HTTP.
"""
