"""Privacy-guard benchmark: evasions let through, ordinary prompts flagged, and the worst scan per pattern.

In one process, no server (the guard is pure CPU; what it costs the event loop is measured here too):

1. the committed evasion corpus (`benchmarks/data/privacy_evasions.jsonl`: each a request body and the kind the
   guard must report) -> `privacy_evasions_sent_remote`, the cases screened clean (target 0), and cases flagged
   under another kind;
2. a fixed seeded sample of 2,000 prompts from ../shared/data/prompts_train.jsonl.gz, each sent as one user
   message -> `privacy_false_positive_rate`, the share flagged (an upper bound: some of those prompts hold a real
   address or phone number; the hits are listed for inspection), plus 1,000 two-message conversations made of
   the same prompts (the joined scan must not invent findings where the messages meet);
3. pathological inputs of `max_scan_chars` characters for every pattern (long runs that made the old patterns
   quadratic, near-misses, separators, escapes) -> per kind the worst scan time, its ratio to ordinary text of
   the same length, and the longest the event loop waited on a 1 ms timer while `screen()` ran it in the
   pool; `worst_inputs()` hands the worst one per kind to `faults.py` for `health_stall_ms_worst_scan`;
4. the inline/threaded crossover for small bodies (`INLINE_MAX_CHARS` in server/privacy/guard.py);
5. documented gaps (`KNOWN_GAPS`): requests the module docstring says get through, checked to still be clean,
   so the documentation stays true.

Writes benchmarks/results/privacy_guard.json (and .png) and prints its summary; `privacy_summary()` returns the
keys `faults.py` folds into faults.json's summary.

    python -m benchmarks.privacy_guard              # about 20 s on two cores
    python -m benchmarks.privacy_guard --quick      # 200 prompts, 20 000-character inputs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, machine
from models.data import DEFAULT_PROMPTS, file_sha256, iter_jsonl
from server.config import PrivacyConfig
from server.privacy import PrivacyGuard

CORPUS = REPO / "benchmarks" / "data" / "privacy_evasions.jsonl"
RESULTS = REPO / "benchmarks" / "results" / "privacy_guard.json"
SAMPLE_SEED, SAMPLE_SIZE = 20260101, 2000
BODY_CHARS = 128  # budget `chat()` uses around its text (keys, role, model, containers): 87 today
ORDINARY = (
    "Summarize the meeting notes for the team: we shipped version 2.3.1 on 2024-05-12, fixed 14 bugs and "
    "planned 3 features for Q3. The key takeaway is that the password reset flow needs a token refresh. "
    "Write a Python function that parses an ISO date like 2024-01-15 and returns a datetime object. "
    "What is 12345 * 6789? Show your work, then explain the difference between TCP and UDP in 3 sentences. "
)
# Pathological inputs per kind: (unit repeated to the length, head, tail).
PATHOLOGICAL: dict[str, dict[str, tuple[str, str, str]]] = {
    "email": {
        "a...a@": ("a", "", "@"),
        "a@a@": ("a@", "", ""),
        "@@@": ("@", "", ""),
        "a@b.b.b.": ("b.", "a@", ""),
        "a@b-a@b-": ("a@b-", "", ""),
        "[at] [dot]": ("x [at] y [dot] ", "", ""),
        "at dot": (" at x dot ", "", ""),
        "fullwidth @": ("a＠", "", ""),
    },
    "phone": {
        "digits": ("1", "", ""),
        "1 1 1": ("1 ", "", ""),
        "1-1-1": ("1-", "", ""),
        "+1+1": ("+1", "", ""),
        "(1) (1)": ("(1) ", "", ""),
        "call me 123": ("call me 123 ", "", ""),
    },
    "card_number": {
        "4444": ("4", "", ""),
        "4 4 4": ("4 ", "", ""),
        "4111 4111": ("4111 ", "", ""),
        "4111-4111": ("4111-", "", ""),
        "amex shape": ("3782 822463 ", "", ""),
        "decimals": ("0.4111111111111111 ", "", ""),
    },
    "iban": {
        "DE89 DE89": ("DE89 ", "", ""),
        "DE89DE89": ("DE89", "", ""),
        "DE8888": ("8", "DE", ""),
        "de89 3704": ("de89 3704 ", "", ""),
    },
    "jwt": {"eyJ-eyJ-": ("eyJ-", "", ""), "eyJaaaa": ("a", "eyJ", ""), "eyJa.eyJa.": ("eyJaaaaaaaaa.", "", "")},
    "openai_key": {"sk-sk-": ("sk-", "", ""), "sk-aaaa": ("a", "sk-", ""), "sk-a sk-a": ("sk-a ", "", "")},
    "aws_key": {"AKIAAKIA": ("AKIA", "", ""), "akia1": ("akia1", "", "")},
    "aws_secret": {"aws secret": ("aws secret ", "", ""), "aws_secret=": ("aws_secret_access_key=a", "", "")},
    "github_token": {"ghp_ghp_": ("ghp_", "", ""), "github_pat_": ("github_pat_", "", "")},
    "slack_token": {"xoxb-": ("xoxb-", "", ""), "hooks.slack.com": ("hooks.slack.com/services/", "", "")},
    "google_api_key": {"AIzaAIza": ("AIza", "", "")},
    "stripe_key": {"sk_live_": ("sk_live_", "", "")},
    "hub_token": {"hf_hf_": ("hf_", "", ""), "npm_": ("npm_a", "", "")},
    "bearer_token": {"bearer ": ("bearer ", "", ""), "Bearer aaaa": ("a", "Bearer ", "")},
    "private_key": {
        "-----": ("-", "", ""),
        "-----BEGIN ": ("-----BEGIN ", "", ""),
        "BEGIN A A A": ("A ", "-----BEGIN ", ""),
    },
    "password": {
        "password password": ("password ", "", ""),
        "password = ": ("password = ", "", ""),
        "password is ": ("password is ", "", ""),
        "password for x": ("my password for x ", "", ""),
        "token: ": ("token: ", "", ""),
        "pin is ": ("pin is ", "", ""),
        "a://b:": ("a://b:", "", ""),
    },
    "decoding": {
        "base64 AAAA": ("A", "", ""),
        "base64 of text": ("QUJD", "", ""),
        "long words": ("internationalization ", "", ""),
        "percent escapes": ("%41", "", ""),
        "HTML entities": ("&#64;", "", ""),
    },
    "normalisation": {
        "zero-width": ("\u200b", "", ""),
        "zero-width in e-mail": ("a\u200b@", "", ""),
        "U+FDFA (NFKC x18)": ("\ufdfa", "", ""),
    },
}
# Requests the guard's docstring says it cannot see; each must still screen clean (else the docs are stale).
KNOWN_GAPS = {
    "card in words": "my card is four one one one, four ones, four ones and four ones again",
    "rot13 key": "fx-cebw-Dz7kG2iY9cE4fJ8mX1aO5pS3uW6tQ0nR",
    "reversed key": "gD0aE6hJ3cF5nB1zK8sW4pR9vL2xT7mQ-jorp-ks",
    "plain-word password": "my password is sunshine",
    "bare AWS secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "phone without a phone word": "4155550132",
    "Cyrillic s in sk-": "ѕk-proj-Qm7xT2vL9pR4sW8zK1nB5cF3hJ6gD0aE",
}


def fill(unit: str, n_chars: int, head: str = "", tail: str = "") -> str:
    """`head + unit * k + tail`, cut to exactly `n_chars` characters."""
    body_chars = n_chars - len(head) - len(tail)
    return head + (unit * (body_chars // len(unit) + 1))[:body_chars] + tail


def ordinary_text(n_chars: int) -> str:
    return fill(ORDINARY, n_chars)


def pathological_inputs(n_chars: int) -> dict[str, dict[str, str]]:
    """kind -> {name: text of `n_chars` characters}."""
    return {
        kind: {name: fill(unit, n_chars, head, tail) for name, (unit, head, tail) in cases.items()}
        for kind, cases in PATHOLOGICAL.items()
    }


def chat(text: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


def scan_s(guard: PrivacyGuard, body: object, repeats: int = 3) -> float:
    """Best of `repeats` synchronous scans of `body`, in seconds (best: the machine's noise only adds)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        guard.scan_payload(body)
        best = min(best, time.perf_counter() - t0)
    return best


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def load_sample(path: Path, size: int = SAMPLE_SIZE) -> list[dict[str, Any]]:
    """A fixed seeded sample of the prompts file's rows (the same rows on every run)."""
    return random.Random(SAMPLE_SEED).sample(list(iter_jsonl(path)), size)


def measure_evasions(guard: PrivacyGuard, cases: list[dict[str, Any]]) -> dict[str, Any]:
    clean, other_kind = [], []
    for case in cases:
        screening = guard.inspect(case["body"])
        if screening.clean:
            clean.append(case["id"])
        elif case["kind"] not in screening.kinds:
            other_kind.append({"id": case["id"], "found": list(screening.kinds)})
    return {
        "cases": len(cases),
        "kinds": dict(sorted(Counter(c["kind"] for c in cases).items())),
        "sent_remote": len(clean),
        "sent_remote_ids": clean,
        "flagged_as_another_kind": other_kind,
    }


def measure_false_positives(guard: PrivacyGuard, rows: list[dict[str, Any]]) -> dict[str, Any]:
    hits, by_kind = [], Counter[str]()
    alone: dict[str, tuple[str, ...]] = {}
    for row in rows:
        kinds = guard.inspect(chat(row["prompt"])).kinds
        alone[row["id"]] = kinds
        if kinds:
            hits.append({"id": row["id"], "kinds": list(kinds)})
            by_kind.update(kinds)
    # Conversations of two prompts: findings of the pair that neither prompt has alone come from the join.
    joined_new = []
    for first, second in zip(rows[0::2], rows[1::2], strict=False):
        body = {"model": "auto", "messages": [{"role": "user", "content": r["prompt"]} for r in (first, second)]}
        extra = set(guard.inspect(body).kinds) - set(alone[first["id"]]) - set(alone[second["id"]])
        if extra:
            joined_new.append({"ids": [first["id"], second["id"]], "kinds": sorted(extra)})
    return {
        "prompts": len(rows),
        "flagged": len(hits),
        "rate": round(len(hits) / max(1, len(rows)), 4),
        "by_kind": dict(by_kind.most_common()),
        "hits": hits,
        "conversations": len(rows) // 2,
        "conversations_with_new_findings": joined_new,
    }


async def _idle_stall_ms(duration_s: float) -> float:
    """Longest lateness of a 1 ms timer on an idle event loop (the machine's own noise) over `duration_s`."""
    lateness, end = [], time.perf_counter() + duration_s
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lateness.append(time.perf_counter() - t0 - 0.001)
    return max(lateness) * 1e3


async def _loop_stall_ms(guard: PrivacyGuard, body: object) -> tuple[float, tuple[str, ...]]:
    """Longest lateness of a 1 ms timer on this event loop while `screen(body)` runs, and what it found."""
    lateness: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - t0 - 0.001)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    lateness.clear()
    screening = await guard.screen(body)
    done.set()
    await ticker
    return max(lateness, default=0.0) * 1e3, screening.kinds


def measure_worst(n_chars: int, repeats: int = 3) -> dict[str, Any]:
    """Per kind: each pathological input's scan time (no deadline, to see the cost) and ratio to ordinary text,
    and, for the worst one, the event-loop stall and the outcome under the default deadline."""
    cap = n_chars + BODY_CHARS  # the text plus the body around it is just under max_scan_chars
    unbounded = PrivacyGuard(PrivacyConfig(max_scan_chars=cap, max_scan_ms=600_000))
    default = PrivacyGuard(PrivacyConfig(max_scan_chars=cap))
    baseline_s = scan_s(unbounded, chat(ordinary_text(n_chars)), repeats)
    out: dict[str, Any] = {
        "n_chars": n_chars,
        "ordinary_ms": round(baseline_s * 1e3, 2),
        "idle_loop_stall_ms": round(asyncio.run(_idle_stall_ms(0.5)), 2),
        "kinds": {},
    }
    try:
        for kind, inputs in pathological_inputs(n_chars).items():
            times = {name: scan_s(unbounded, chat(text), repeats) for name, text in inputs.items()}
            worst = max(times, key=lambda name: times[name])
            stall_ms, kinds = asyncio.run(_loop_stall_ms(default, chat(inputs[worst])))
            out["kinds"][kind] = {
                "worst_input": worst,
                "worst_ms": round(times[worst] * 1e3, 2),
                "worst_over_ordinary": round(times[worst] / baseline_s, 2),
                "loop_stall_ms": round(stall_ms, 2),
                "default_deadline_outcome": list(kinds),
                "inputs_ms": {name: round(t * 1e3, 2) for name, t in times.items()},
            }
    finally:
        default.close()
    return out


def worst_inputs(n_chars: int = 200_000) -> dict[str, str]:
    """kind -> the pathological input of `n_chars` characters that scans slowest on this machine (for
    `faults.py`'s `health_stall_ms_worst_scan`: send each as a prompt while timing /health)."""
    guard = PrivacyGuard(PrivacyConfig(max_scan_chars=n_chars + BODY_CHARS, max_scan_ms=600_000))
    inputs = pathological_inputs(n_chars)
    return {kind: max(texts.values(), key=lambda text: scan_s(guard, chat(text), 1)) for kind, texts in inputs.items()}


async def _screen_us(guard: PrivacyGuard, body: object, count: int) -> float:
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        await guard.screen(body)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def measure_inline(
    rows: list[dict[str, Any]], sizes: tuple[int, ...] = (500, 2000, 4000, 8000, 16000)
) -> dict[str, Any]:
    """Median `screen()` latency of real prompts cut to each size, scanned inline vs in the pool."""
    import server.privacy.guard as guard_module

    configured = guard_module.INLINE_MAX_CHARS
    guard = PrivacyGuard(PrivacyConfig())
    text = "\n".join(row["prompt"] for row in rows)
    out: dict[str, Any] = {"INLINE_MAX_CHARS": configured, "sizes": {}}
    try:
        for size in sizes:
            body = chat(fill(text, size))
            row = {}
            for mode, threshold in (("inline_us", 10**9), ("threaded_us", 0)):
                guard_module.INLINE_MAX_CHARS = threshold
                row[mode] = round(asyncio.run(_screen_us(guard, body, 200)), 1)
            out["sizes"][str(size)] = row
    finally:
        guard_module.INLINE_MAX_CHARS = configured
        guard.close()
    return out


def summary_of(results: dict[str, Any]) -> dict[str, Any]:
    kinds = results["worst"]["kinds"]
    return {
        "privacy_evasions_sent_remote": results["evasions"]["sent_remote"],
        "privacy_evasion_cases": results["evasions"]["cases"],
        "privacy_false_positive_rate": results["false_positives"]["rate"],
        "privacy_worst_scan_ms": max(k["worst_ms"] for k in kinds.values()),
        "privacy_worst_over_ordinary": max(k["worst_over_ordinary"] for k in kinds.values()),
        "privacy_loop_stall_ms_max": max(k["loop_stall_ms"] for k in kinds.values()),
        "privacy_idle_loop_stall_ms": results["worst"]["idle_loop_stall_ms"],
        "privacy_known_gaps_still_clean": all(results["known_gaps"].values()),
    }


def run(prompts: Path = DEFAULT_PROMPTS, quick: bool = False) -> dict[str, Any]:
    guard = PrivacyGuard(PrivacyConfig())
    rows = load_sample(prompts, 200 if quick else SAMPLE_SIZE)
    started = time.time()
    results: dict[str, Any] = {
        "benchmark": "privacy_guard",
        "machine": machine(),
        "sample": {"file": prompts.name, "sha256": file_sha256(prompts), "seed": SAMPLE_SEED, "size": len(rows)},
        "evasions": measure_evasions(guard, load_corpus()),
        "false_positives": measure_false_positives(guard, rows),
        "known_gaps": {name: guard.inspect(chat(text)).clean for name, text in KNOWN_GAPS.items()},
        "worst": measure_worst(20_000 if quick else 200_000),
        "inline": measure_inline(rows[:50]),
    }
    results["duration_s"] = round(time.time() - started, 1)
    results["summary"] = summary_of(results)
    return results


def privacy_summary(prompts: Path = DEFAULT_PROMPTS, quick: bool = False) -> dict[str, Any]:
    """The privacy keys for faults.json's summary (runs the whole benchmark: about 20 s on two cores)."""
    return summary_of(run(prompts, quick))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = results["worst"]["kinds"]
    names = list(kinds)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.bar(names, [kinds[k]["worst_ms"] for k in names], color="tab:orange", label="worst pathological input")
    ax.axhline(results["worst"]["ordinary_ms"], color="tab:blue", label="ordinary text, same length")
    ax.set_ylabel(f"scan time (ms) at {results['worst']['n_chars']:,} characters")
    ax.set_title("Privacy guard: worst-case scan per kind (linear detectors)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON (a PNG beside it)")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="prompts_train.jsonl.gz")
    parser.add_argument("--quick", action="store_true", help="200 prompts and 20,000-character inputs")
    args = parser.parse_args(argv)
    results = run(args.prompts, args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(results["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
