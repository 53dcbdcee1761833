"""Every Triton kernel in kernels/ compiles for the production H100 (sm_90) without register spills; no GPU needed.

CI runs the kernels under ``TRITON_INTERPRET=1``, which never calls Triton's compiler. A kernel that the
compiler rejects, or that spills, passes there and then fails or crawls on the H100. ``sm90_compile``
compiles every launch configuration that the launchers choose at MiniLM's shapes, for every dtype. It uses
``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` and Triton's bundled ptxas. This module
runs it once and asserts on each op and dtype: every launch has a cubin and no spill stores or loads.
Registers and spills per launch are in the failure messages; ``pytest -s`` prints them for passing runs too.

The compile runs in a child Python without ``TRITON_INTERPRET``. tests/conftest.py sets that variable when
there is no GPU, and under it ``import triton`` turns Triton's own library functions (``tl.sum``, ``tl.max``,
...) into interpreter objects, which the compiler cannot lower. Nothing here is marked ``gpu``.

Triton 3.6's interpreter, the production version, cannot run the interpreter tests beside this one with
numpy >= 2. For kernels that loop over a runtime bound (``for ... in range(0, S, BLOCK)`` in attention and
pool_head), ``int(self.handle.data)`` in triton/runtime/interpreter.py warns on numpy 2.2 (an error under
this suite's filterwarnings) and raises TypeError on 2.4; 3.9 squeezes the array. That is a Triton bug, not a
kernel bug. Compiling, as this module does, is how 3.6 itself gets checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import triton

from tests.kernels.sm90_compile import DRIVERS, DTYPES

REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 600  # ~20 s on a 2-core box; the margin is for a loaded CI runner


def _skip_without_nvidia_compiler() -> None:
    if "nvidia" not in triton.backends.backends:
        pytest.skip("Triton's NVIDIA backend is not installed")
    nvidia = pytest.importorskip("triton.backends.nvidia.compiler")
    try:
        nvidia.get_ptxas(90)  # the ptxas Triton runs for sm_90; raises when its binary is missing
    except RuntimeError as e:
        pytest.skip(f"Triton's ptxas is unavailable: {e}")


@pytest.fixture(scope="module")
def sm90(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``python -m tests.kernels.sm90_compile`` once, without TRITON_INTERPRET; return its JSON."""
    _skip_without_nvidia_compiler()
    out = tmp_path_factory.mktemp("sm90") / "compiled.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    child = subprocess.run(
        [sys.executable, "-m", "tests.kernels.sm90_compile", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert child.returncode == 0, f"sm90_compile exited {child.returncode}:\n{child.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _describe(record: dict[str, Any]) -> str:
    consts = ", ".join(f"{k}={v}" for k, v in record["constexprs"].items())
    opts = ", ".join(f"{k}={v}" for k, v in record["options"].items())
    odd = f", not 16-divisible: {', '.join(record['not_divisible'])}" if record["not_divisible"] else ""
    where = f"{record['kernel']}[{consts}; {opts}{odd}] from B={record['shape'][0]} S={record['shape'][1]}"
    if "error" in record:
        return f"{where}: DOES NOT COMPILE: {record['error']}"
    return (
        f"{where}: {record['registers']} registers, {record['spill_store_bytes']} B spill stores, "
        f"{record['spill_load_bytes']} B spill loads, {record['stack_bytes']} B stack, "
        f"{record['cubin_bytes']} B cubin"
    )


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", list(DRIVERS))
def test_compiles_for_sm90_without_spills(op: str, dtype: str, sm90: dict[str, Any]) -> None:
    records = [r for r in sm90["records"] if r["op"] == op and r["dtype"] == dtype]
    assert records, f"{op} launched no kernel in {dtype}"
    header = f"{op} {dtype} on sm_90, triton {sm90['triton']}, ptxas {sm90['ptxas']}:"
    report = "\n".join([header, *map(_describe, records)])
    print(report)
    assert not any("error" in r for r in records), report
    assert all(r["cubin_bytes"] > 0 for r in records), f"empty cubin; {report}"
    assert not any(r["spill_store_bytes"] or r["spill_load_bytes"] for r in records), f"spills; {report}"


def test_every_kernel_is_compiled(sm90: dict[str, Any]) -> None:
    """A kernel added to kernels/ needs a driver in sm90_compile.DRIVERS, or it is never compiled here."""
    defined, launched = set(sm90["kernels_defined"]), set(sm90["kernels_launched"])
    assert defined, "found no Triton kernels in kernels/"
    assert defined <= launched, f"kernels never compiled for sm_90: {sorted(defined - launched)}"
