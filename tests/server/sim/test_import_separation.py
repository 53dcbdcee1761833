"""The policy's latency estimate and the simulator's timing share no code and no constant (issue 17).

Read from the source (AST), not from `sys.modules`: every `import` and `from ... import` in a module, at any
depth (functions too, so a lazy import counts), resolved to modules under `server/`, followed transitively.
A benchmark that grades the policy on the simulator would otherwise grade the policy's formulas against
themselves.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SERVER = Path(__file__).resolve().parents[3] / "server"
POLICY_LATENCY = "server.policy.latency"
SIM_TIMING = (  # the simulator's scheduler and timing: what a benchmark's latencies come from
    "server.sim.engine",
    "server.sim.latency",
    "server.sim.gpu",
    "server.sim.clock",
    "server.sim.sequence",
    "server.sim.stats",
)


def _path(module: str) -> Path | None:
    rel = Path(*module.split(".")[1:])
    for candidate in (SERVER / rel / "__init__.py", (SERVER / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> set[str]:
    """Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c."""
    parts = module.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts) + 1)}


@cache
def direct_imports(module: str) -> frozenset[str]:
    """Modules under `server` that `module`'s source imports, parents included."""
    path = _path(module)
    if path is None:
        return frozenset()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base]
            names += [f"{base}.{alias.name}" for alias in node.names if _path(f"{base}.{alias.name}") is not None]
        for name in names:
            if name == "server" or name.startswith("server."):
                found |= {m for m in _with_parents(name) if _path(m) is not None}
    found.discard(module)
    return frozenset(found)


def closure(module: str) -> set[str]:
    """Every module under `server` that importing `module` runs, `module` excluded."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for dep in direct_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    seen.discard(module)
    return seen


def test_resolver_sees_relative_lazy_and_transitive_imports() -> None:
    deps = closure(POLICY_LATENCY)
    assert {"server.config", "server.load"} <= deps  # `from ..config import`, `from ..load import`
    assert "server.backends" in direct_imports("server.config")  # imported inside a function
    assert {"server.sim.latency", "server.sim.gpu", "server.sim.clock"} <= closure("server.sim.engine")


def test_policy_latency_reaches_no_simulator_code() -> None:
    reached = sorted(m for m in closure(POLICY_LATENCY) if m == "server.sim" or m.startswith("server.sim."))
    assert not reached, f"{POLICY_LATENCY} imports simulator modules: {reached}"


def test_simulator_timing_reaches_no_policy_code() -> None:
    for module in SIM_TIMING:
        assert _path(module) is not None, f"{module} is gone; update SIM_TIMING"
        reached = sorted(m for m in closure(module) if m.startswith("server.policy"))
        assert not reached, f"{module} imports policy modules: {reached}"
