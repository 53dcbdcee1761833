"""Compile every Triton kernel in kernels/ for the production H100 (sm_90) at MiniLM's launch configurations.

``python -m tests.kernels.sm90_compile OUT.json`` (from the repository root, without ``TRITON_INTERPRET``)
writes one record per distinct compile: its kernel, constexprs, options, cubin size, and the registers and
spill bytes reported by ptxas. ``test_compile_sm90.py`` runs it in a child process and asserts on the file.

How the launches are found: each launcher is called the way ``models/fused_bert.py`` calls it, at MiniLM's
shapes, with its kernel swapped for a recorder. Block sizes, constexprs and ``num_warps`` therefore come from
the launchers' own code. Each recorded launch is specialised the way the JIT would at that call (argument
dtypes, 16-divisible ints and pointers, ints equal to 1), using the JIT's own ``native_specialize_impl``. The
result is compiled with ``triton.compile(ASTSource(fn, signature, constexprs, attrs), target=...)``. That API
is the same in Triton 3.6 (the production image) and 3.9 (CI). In both, constexprs appear in the signature
as ``"constexpr"``, and ``attrs`` is keyed by argument-index tuples. Triton ships its own ptxas, so no GPU or
CUDA toolkit is needed. Registers and spills come from Triton's own ``ptxas -v`` call, which
``TRITON_DUMP_PTXAS_LOG`` prints, so the ptxas flags are exactly Triton's.

Tensors are on the meta device: they have shapes, strides and dtypes but no memory. Their address is 0,
which counts as 16-byte aligned, as CUDA allocations are.

What it does not know: numerics (the interpreter tests check those) or how fast anything runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import io
import json
import os
import pkgutil
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import triton
from triton._C.libtriton import native_specialize_impl  # the JIT's own per-argument specialiser
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.compiler.compiler import make_backend
from triton.runtime.jit import JITFunction

import kernels
from kernels import attention, gelu, layernorm, pool_head
from models.encoder import DEFAULT_BUCKETS, EncoderConfig
from models.fused_bert import BERT_CONFIGS
from models.task_head import TaskHeadConfig

H100 = GPUTarget("cuda", 90, 32)  # backend, compute capability, warp size
MINILM = BERT_CONFIGS["all-MiniLM-L6-v2"]  # hidden 384, 12 heads × 32, FFN 1536
NUM_CLASSES = TaskHeadConfig().n_classes  # 11 task categories
# (batch, padded length) pairs: every padding bucket, at batch 1 and at the encoder's batch size, plus short,
# odd lengths as padding="longest" makes them. These change block sizes and which ints are 16-divisible.
SHAPES = sorted({(b, s) for s in DEFAULT_BUCKETS for b in (1, EncoderConfig().batch_size)} | {(1, 3), (3, 77)})
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}  # on CUDA
META = torch.device("meta")

_REGS = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


# --- the calls fused_bert makes, per op -------------------------------------------------------------------


def _drive_layernorm(dtype: torch.dtype, b: int, s: int) -> None:
    h = MINILM.hidden_size
    vec = torch.empty(h, device=META, dtype=dtype)  # [H]: LN weight, beta, a dense layer's bias
    positions = torch.empty(s, h, device=META, dtype=dtype)  # position_embeddings[:S], broadcast over B
    x = torch.empty(b, s, h, device=META, dtype=dtype)  # [B, S, H] word (+ token type) embeddings
    eps = MINILM.layer_norm_eps
    layernorm.add_bias_residual_layernorm(x, vec, positions, vec, vec, eps)  # token-type row 0 as bias
    layernorm.add_bias_residual_layernorm(x, None, positions, vec, vec, eps)  # token_type_ids given
    flat = x.view(b * s, h)  # [B·S, H]: a dense layer's output and the residual stream
    layernorm.add_bias_residual_layernorm(flat, vec, flat, vec, vec, eps)


def _drive_gelu(dtype: torch.dtype, b: int, s: int) -> None:
    inter = MINILM.intermediate_size
    x = torch.empty(b * s, inter, device=META, dtype=dtype)  # [B·S, I] FFN-up GEMM output
    gelu.bias_gelu(x, torch.empty(inter, device=META, dtype=dtype))


def _drive_attention(dtype: torch.dtype, b: int, s: int) -> None:
    qkv = torch.empty(b, s, 3 * MINILM.hidden_size, device=META, dtype=dtype)  # [B, S, 3·H·D]
    key_mask, kv_len = attention.prepare_key_mask(torch.ones(b, s, device=META, dtype=torch.int64))
    attention.attention(qkv, key_mask, kv_len, MINILM.num_heads)


def _drive_pool_head(dtype: torch.dtype, b: int, s: int) -> None:
    hidden = torch.empty(b, s, MINILM.hidden_size, device=META, dtype=dtype)  # [B, S, H]
    key_mask, _ = attention.prepare_key_mask(torch.ones(b, s, device=META, dtype=torch.int64))  # [B, S] int32
    pool_head.mean_pool_normalize(hidden, key_mask)
    weight = torch.empty(NUM_CLASSES, MINILM.hidden_size, device=META)  # [C, H] fp32, as a trained head
    pool_head.pool_head(hidden, key_mask, weight, torch.empty(NUM_CLASSES, device=META))


DRIVERS: dict[str, Callable[[torch.dtype, int, int], None]] = {
    "layernorm": _drive_layernorm,
    "gelu": _drive_gelu,
    "attention": _drive_attention,
    "pool_head": _drive_pool_head,
}


# --- recording launches and specialising them as the JIT does ---------------------------------------------

Call = tuple[JITFunction, tuple[Any, ...], dict[str, Any]]  # kernel[grid](*args, **kwargs), grid dropped


@dataclasses.dataclass(frozen=True)
class Launch:
    """One compile the JIT would make: the kernel, its specialised signature and its compile options."""

    fn: JITFunction
    signature: dict[str, str]  # argument name → "*fp16", "i32", "fp32", "constexpr", ...
    constexprs: dict[str, Any]  # declared tl.constexpr arguments, plus ints the JIT folds (== 1)
    attrs: dict[tuple[int, ...], Any]  # (argument index,) → [["tt.divisibility", 16]]
    options: dict[str, Any]  # the launch's num_warps, enable_fp_fusion, ... (num_stages: backend default)
    not_divisible: tuple[str, ...]  # int and pointer arguments that got no 16-divisibility hint

    @property
    def key(self) -> str:
        return repr((self.fn.__name__, self.signature, self.constexprs, self.attrs, self.options))


def kernel_modules() -> list[ModuleType]:
    return [importlib.import_module(f"kernels.{m.name}") for m in pkgutil.iter_modules(kernels.__path__)]


def _record(drive: Callable[[], None]) -> list[Call]:
    """Run ``drive`` with every kernel in kernels/ swapped for a recorder; return the launches it made."""
    calls: list[Call] = []

    class Recorder:
        def __init__(self, kernel: JITFunction) -> None:
            self.kernel = kernel

        def __getitem__(self, grid: object) -> Callable[..., None]:
            return lambda *args, **kwargs: calls.append((self.kernel, args, kwargs))

    patched = [(m, name, obj) for m in kernel_modules() for name, obj in vars(m).items() if _is_kernel(obj)]
    try:
        for module, name, obj in patched:
            setattr(module, name, Recorder(obj))
        drive()
    finally:
        for module, name, obj in patched:
            setattr(module, name, obj)
    return calls


def _is_kernel(obj: object) -> bool:
    if type(obj).__name__ == "InterpretedFunction":
        raise RuntimeError("kernels/ was imported under TRITON_INTERPRET=1; run this without it")
    return isinstance(obj, JITFunction)


@functools.cache
def _backend() -> Any:
    return make_backend(H100)


def _specialise(call: Call) -> Launch:
    """Turn a recorded ``kernel[grid](*args, **kwargs)`` into the signature the JIT would compile."""
    fn, args, kwargs = call
    backend = _backend()
    names = fn.arg_names
    bound = inspect.signature(fn.fn).bind(*args, **{k: v for k, v in kwargs.items() if k in names})
    bound.apply_defaults()
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = {}
    attrs: dict[tuple[int, ...], Any] = {}
    not_divisible: list[str] = []
    for param, (name, value) in zip(fn.params, bound.arguments.items(), strict=True):
        if param.is_constexpr:
            signature[name], constexprs[name] = "constexpr", value
            continue
        ty, spec = native_specialize_impl(
            backend, value, param.is_const, not param.do_not_specialize, not param.do_not_specialize_on_alignment
        )
        signature[name] = ty
        if ty == "constexpr":  # an int equal to 1 (or None), folded into the kernel
            constexprs[name] = value
        elif isinstance(spec, str) and spec:  # "D": divisible by 16
            attrs[(param.num,)] = backend.parse_attr(spec)
        elif spec == "":  # an int or pointer that is not 16-divisible (floats and bools get None)
            not_divisible.append(name)
    options = {k: v for k, v in kwargs.items() if k not in names}
    return Launch(fn, signature, constexprs, attrs, options, tuple(not_divisible))


# --- compiling -------------------------------------------------------------------------------------------


def _compile(launch: Launch) -> dict[str, Any]:
    """Compile for sm_90 → cubin size and ptxas's figures, or the error that stopped it."""
    src = ASTSource(launch.fn, launch.signature, launch.constexprs, launch.attrs)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG prints ptxas -v here
            compiled = triton.compile(src, target=H100, options=launch.options)
    except Exception as e:  # CompilationError, PTXASError, MLIR pass failures: reported, one per launch
        return {"error": f"{type(e).__name__}: {e}"}
    regs, frame = _REGS.search(log.getvalue()), _FRAME.search(log.getvalue())
    if not (regs and frame):
        return {"error": f"no ptxas -v figures in Triton's log:\n{log.getvalue()}"}
    stack, stores, loads = (int(g) for g in frame.groups())
    return {
        "cubin_bytes": len(compiled.asm.get("cubin", b"")),
        "registers": int(regs.group(1)),
        "stack_bytes": stack,
        "spill_store_bytes": stores,
        "spill_load_bytes": loads,
    }


def compile_all() -> dict[str, Any]:
    """Every distinct launch of every op and dtype over SHAPES, compiled; plus which kernels were covered."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(H100.arch)  # the ptxas Triton itself runs for sm_90
    records: list[dict[str, Any]] = []
    launched: set[str] = set()
    for op, drive in DRIVERS.items():
        for dtype_name, dtype in DTYPES.items():
            seen: set[str] = set()
            for b, s in SHAPES:
                for call in _record(functools.partial(drive, dtype, b, s)):
                    launch = _specialise(call)
                    launched.add(launch.fn.__name__)
                    if launch.key in seen:
                        continue
                    seen.add(launch.key)
                    record = {
                        "op": op,
                        "dtype": dtype_name,
                        "kernel": launch.fn.__name__,
                        "constexprs": {k: repr(v) for k, v in launch.constexprs.items()},
                        "options": launch.options,
                        "not_divisible": list(launch.not_divisible),
                        "shape": [b, s],
                    }
                    records.append(record | _compile(launch))
    defined = sorted({obj.__name__ for m in kernel_modules() for obj in vars(m).values() if _is_kernel(obj)})
    return {
        "triton": triton.__version__,
        "ptxas": f"{ptxas.path} ({ptxas.version})",
        "kernels_defined": defined,
        "kernels_launched": sorted(launched),
        "records": records,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.kernels.sm90_compile OUT.json", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["TRITON_CACHE_DIR"] = cache_dir  # a cache hit would skip ptxas, and its log
        os.environ["TRITON_ALWAYS_COMPILE"] = "1"
        os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
        result = compile_all()
    Path(argv[0]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
