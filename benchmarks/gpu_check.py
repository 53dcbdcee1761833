"""The GPU check: every GPU measurement of Triage in one command that ends within a deadline (default 9 min).

    bash scripts/gpu_check.sh              # on the lent GPU machine: OUT=folder that comes back
    bash scripts/gpu_check.sh --dry-run    # on a CPU machine: simulated vLLM, CPU classifier, the same plumbing

Steps run in the order of `STEPS`, each inside its own time budget and never past the global deadline: a step
that no longer fits is skipped ("no time"), a step whose prerequisite failed is skipped, and a hard alarm cuts
a step that overruns. The engines start in the background first, so the classifier's GPU tests run while they
load. Each of the five parts (classifier, engines, e2e, throughput, replay) writes `<part>.json` to the output
folder as soon as its last step ends, and is rewritten if a later step of it runs; `summary.json` (the GPU,
versions, each part's status and wall time) and `results.tar.gz` (logs, full result JSONs, PNGs) are rewritten
after every step, so a run cut short still leaves what it measured. At most 8 files come back from the device;
this writes 7.

Knows the order, budgets and bookkeeping of the steps; what each step measures lives in `gpu_steps.py`.
"""

from __future__ import annotations

import argparse
import json
import signal
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a file: make `benchmarks.*` importable
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import gpu_steps
from benchmarks.gpu_steps import Context, StepFailed, StepSkipped

PARTS = ("classifier", "engines", "e2e", "throughput", "replay")  # one JSON file each, in the order
DEADLINE_S = 540.0  # the device call's command may run 600 s; leave a minute for start-up and what follows
DRY_RUN_DEADLINE_S = 240.0


@dataclass(frozen=True)
class Step:
    name: str
    part: str  # one of PARTS, or "setup"
    run: Callable[[Context, float], dict[str, Any]]  # (context, budget_s) -> details; raises StepFailed/Skipped
    budget_s: float  # longest this step may take on the GPU machine
    min_s: float  # not started with less than this left before the deadline (minus what later steps reserve)
    needs: tuple[str, ...] = ()  # steps that must have ended ok
    reserve_s: float = 0.0  # kept back from the steps before this one: it always gets this much
    dry_budget_s: float = 60.0  # budget in a dry run (simulated engines are fast; CI machines are slow)


STEPS: tuple[Step, ...] = (
    Step("setup", "setup", gpu_steps.setup, budget_s=90, min_s=0),
    Step("engines-start", "engines", gpu_steps.engines_start, budget_s=15, min_s=0, needs=("setup",)),
    Step("classifier-tests", "classifier", gpu_steps.classifier_tests, 150, 30, ("setup",)),
    Step("engines", "engines", gpu_steps.engines_ready, 330, 30, ("engines-start",)),
    Step("engines-memory", "engines", gpu_steps.engines_memory, 15, 0, ("engines",)),
    Step("classifier-bench", "classifier", gpu_steps.classifier_bench, 100, 40, ("setup",)),
    Step("e2e-live", "e2e", gpu_steps.e2e_live, 75, 30, ("engines",)),
    Step("throughput", "throughput", gpu_steps.throughput, 100, 45, ("engines",)),
    Step("e2e-restart", "e2e", gpu_steps.e2e_restart, 150, 60, ("engines",)),
    Step("replay", "replay", gpu_steps.replay, 90, 45, ("engines",)),
    Step("e2e-shutdown", "e2e", gpu_steps.e2e_shutdown, 40, 0, ("engines-start",), reserve_s=40, dry_budget_s=40),
)


@dataclass
class Record:
    """One step's outcome, as the summary and its part's JSON show it."""

    status: str  # ok | failed | skipped
    reason: str = ""
    wall_s: float = 0.0
    budget_s: float = 0.0
    started_at_s: float = 0.0  # seconds after the check started
    details: dict[str, Any] = field(default_factory=dict)


class DeadlineExceeded(BaseException):
    """The hard alarm: a step ran past the global deadline (BaseException: no step's `except Exception` eats it)."""


@contextmanager
def alarm_at(seconds: float) -> Iterator[None]:
    """Raise DeadlineExceeded in the main thread after `seconds` (SIGALRM)."""

    def fire(signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded(f"global deadline passed ({seconds:.0f} s)")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def part_status(records: list[Record]) -> tuple[str, str]:
    """(status, reason) of a part from its steps: failed > partial (ok and skipped) > ok > skipped."""
    statuses = {r.status for r in records}
    reasons = "; ".join(r.reason for r in records if r.reason)
    if "failed" in statuses:
        return "failed", reasons
    if statuses == {"ok"}:
        return "ok", ""
    if "ok" in statuses:
        return "partial", reasons
    return "skipped", reasons


class Check:
    """Runs the steps and keeps the output folder current."""

    def __init__(self, ctx: Context, steps: tuple[Step, ...], deadline_s: float) -> None:
        self.ctx, self.steps, self.deadline_s = ctx, steps, deadline_s
        self.t0 = time.monotonic()
        self.records: dict[str, Record] = {}

    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> dict[str, Any]:
        try:
            with alarm_at(self.deadline_s + self.ctx.args.grace_s):
                for i, step in enumerate(self.steps):
                    self.records[step.name] = self.one(step, self.steps[i + 1 :])
                    self.write(step.part)
        except DeadlineExceeded as exc:
            running = next(s for s in self.steps if s.name not in self.records)
            self.records[running.name] = Record("failed", str(exc), round(self.elapsed_s(), 1))
            for step in self.steps:
                self.records.setdefault(step.name, Record("skipped", "no time: the global deadline passed"))
        finally:
            self.ctx.teardown = gpu_steps.teardown(self.ctx)
            for part in PARTS:
                self.write(part)
        return self.summary()

    def one(self, step: Step, later: tuple[Step, ...]) -> Record:
        missing = [n for n in step.needs if self.records.get(n, Record("skipped")).status != "ok"]
        if missing:
            return Record("skipped", f"needs {', '.join(missing)}, which did not end ok")
        reserve_s = sum(s.reserve_s for s in later)
        left_s = self.deadline_s - self.elapsed_s() - reserve_s
        min_s = self.ctx.args.min_s.get(step.name, 1.0 if self.ctx.dry_run else step.min_s)
        if left_s < min_s:
            return Record("skipped", f"no time: {left_s:.0f} s left before the deadline, the step needs {min_s:g} s")
        budget_s = min(step.dry_budget_s if self.ctx.dry_run else step.budget_s, left_s)
        started_at_s = self.elapsed_s()
        record = Record("ok", budget_s=round(budget_s, 1), started_at_s=round(started_at_s, 1))
        print(f"gpu_check: {step.name} (budget {budget_s:.0f} s, at {started_at_s:.0f} s)", flush=True)
        try:
            if step.name in self.ctx.args.inject_failure:
                raise StepFailed("injected by --inject-failure (to check the plumbing)")
            record.details = step.run(self.ctx, budget_s)
        except StepSkipped as exc:
            record.status, record.reason, record.details = "skipped", str(exc), exc.details
        except StepFailed as exc:
            record.status, record.reason, record.details = "failed", str(exc), exc.details
        except Exception as exc:  # a step's bug or an unexpected environment: the check goes on without it
            record.status, record.reason = "failed", f"{type(exc).__name__}: {exc}"
        record.wall_s = round(self.elapsed_s() - started_at_s, 1)
        print(f"gpu_check: {step.name}: {record.status} {record.reason[:300]} ({record.wall_s:.0f} s)", flush=True)
        return record

    # -- output --------------------------------------------------------------------------------------------

    def part(self, part: str) -> dict[str, Any] | None:
        steps = [s for s in self.steps if s.part == part and s.name in self.records]
        if not steps:
            return None
        records = [self.records[s.name] for s in steps]
        status, reason = part_status(records)
        return {
            "part": part,
            "status": status,
            "reason": reason,
            "wall_s": round(sum(r.wall_s for r in records), 1),
            "steps": {s.name: vars(self.records[s.name]) for s in steps},
        }

    def write(self, part: str) -> None:
        out = self.ctx.out
        data = self.part(part)
        if data is not None and part in PARTS:
            (out / f"{part}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
        (out / "summary.json").write_text(json.dumps(self.summary(), indent=1, default=str) + "\n")
        pack(self.ctx.work, out / "results.tar.gz")

    def summary(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        for part in PARTS:
            data = self.part(part)
            if data is None:
                parts[part] = {"status": "pending"}
            else:
                steps = {k: {"status": v["status"], "wall_s": v["wall_s"]} for k, v in data["steps"].items()}
                parts[part] = {"status": data["status"], "reason": data["reason"], "wall_s": data["wall_s"]}
                parts[part]["steps"] = steps
        setup = self.records.get("setup")
        return {
            "check": "gpu_check",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dry_run": self.ctx.dry_run,
            "deadline_s": self.deadline_s,
            "wall_s": round(self.elapsed_s(), 1),
            "machine": self.ctx.machine,
            "checkout": self.ctx.checkout,
            "encoder": self.ctx.encoder,
            "engine_start_up_shortcuts": self.ctx.shortcuts,
            "setup": {"status": setup.status, "reason": setup.reason, "wall_s": setup.wall_s} if setup else None,
            "parts": parts,
            "teardown": self.ctx.teardown,
            "todo": self.ctx.todo,
            "files": sorted(p.name for p in self.ctx.out.iterdir()),
        }


def pack(work: Path, path: Path) -> None:
    """work/ (logs, result JSONs, PNGs) as one tar.gz: one of the 8 files the device call brings back."""
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(work.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(work)))
    tmp.replace(path)


def _min_s(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, text.split(",")):
        name, _, seconds = item.partition("=")
        out[name] = float(seconds)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="simulated vLLM engines and the CPU classifier (no GPU)")
    p.add_argument("--out", type=Path, required=True, help="folder for summary.json, <part>.json, results.tar.gz")
    p.add_argument("--base", type=Path, default=Path("/tmp/triage-gpu-check"), help="models, encoder, logs")
    p.add_argument("--deadline-s", type=float, default=None, help=f"wall time for every step (default {DEADLINE_S:g})")
    p.add_argument("--grace-s", type=float, default=15.0, help="past the deadline before the hard alarm cuts a step")
    p.add_argument(
        "--inject-failure", default="", type=lambda s: set(filter(None, s.split(","))), help="steps made to fail"
    )
    p.add_argument("--min-s", default={}, type=_min_s, help="STEP=SECONDS,...: override a step's minimum")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = (args.inject_failure | set(args.min_s)) - {s.name for s in STEPS}
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}; steps: {', '.join(s.name for s in STEPS)}")
    deadline_s = args.deadline_s or (DRY_RUN_DEADLINE_S if args.dry_run else DEADLINE_S)
    ctx = Context.create(args)
    summary = Check(ctx, STEPS, deadline_s).run()
    width = max(len(p) for p in PARTS)
    for name, part in summary["parts"].items():
        print(f"{name:<{width}}  {part['status']:<8} {part.get('wall_s', 0):6.1f} s  {part.get('reason', '')[:160]}")
    print(json.dumps({k: summary[k] for k in ("machine", "wall_s", "dry_run")}, default=str))
    return 0 if all(p["status"] in ("ok", "partial", "skipped") for p in summary["parts"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
