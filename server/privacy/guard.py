"""`PrivacyGuard`: screens a request body and says which kinds of secret or personal data it holds.

`await guard.screen(body)` is what the gateway calls. A body of up to `INLINE_MAX_CHARS` characters is scanned
on the calling thread, where the thread hop would cost more than it saves: on the 2-core dev box a 500-character
prompt takes 56 µs inline and 134 µs through the pool, a 4 000-character one 0.70 ms and 0.86 ms, and from
8 000 characters on the two are level (`benchmarks/results/privacy_guard.json`, `inline`); most prompts are
under 4 KB, and 0.7 ms is as long as the event loop waits on an inline scan. A larger body is walked
and scanned in a small dedicated thread pool, so the event loop keeps serving. The scan is pure Python and
`re`, which hold the interpreter lock, so every step is bounded too: at most `max_scan_chars` characters,
linear-time detectors, one `re` call per 17 KB window, and a deadline (`max_scan_ms`) checked between
detectors and windows. What is not read is not clean: a body over the character limit (`unscanned`), past the
deadline (`scan_timeout`) or with a token-id prompt (`token_ids`) is reported unscannable and the gateway keeps
it local, as for a finding. Past twice the deadline the caller stops waiting (a user pattern may be stuck in
`re`, which no thread can interrupt) and gets `scan_timeout`.

The scan reads every string, dict key and number (`walk.py`), normalised (`normalize.py`), one per line; then
where messages meet, each message's first and last `REACH` characters joined with nothing and with a space
between, so that a secret split across messages meets again; then the percent-, entity-, base64- and
hex-decoded forms. Findings are kinds only: the matched text never leaves this package, so nothing found can
reach a log, a header or the decision store. Knows nothing about routing or HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..config import PrivacyConfig
from .detectors import builtin_detectors, kinds, user_detectors
from .matching import REACH, Deadline, Detector, ScanTimeout, lowered
from .normalize import MAX_DECODED_CHARS, TooLong, Views
from .walk import Collected, collect

UNSCANNED = "unscanned"  # more text than max_scan_chars
SCAN_TIMEOUT = "scan_timeout"  # the scan ran past max_scan_ms
TOKEN_IDS = "token_ids"  # a prompt of token ids: nothing to read
UNSCANNABLE = frozenset({UNSCANNED, SCAN_TIMEOUT, TOKEN_IDS})
INLINE_MAX_CHARS = 4096  # bodies up to this many characters are scanned on the caller's thread
DECODE_DEPTH = 2  # base64 inside base64 is decoded once more, no further
_WORKERS = 2  # scan threads: two big bodies at a time; more only queue on the interpreter lock

logger = logging.getLogger("triage.privacy")


@dataclass(frozen=True, slots=True)
class Screening:
    """What the guard found in one body: kinds only, never the text."""

    kinds: tuple[str, ...]  # kinds found, then why the body could not be read in full (see UNSCANNABLE)
    chars: int  # budget the walk used: the body's text plus what its containers cost (see walk.py)
    elapsed_s: float
    threaded: bool  # scanned in the pool rather than on the caller's thread

    @property
    def clean(self) -> bool:
        return not self.kinds

    @property
    def unscannable(self) -> bool:
        return not UNSCANNABLE.isdisjoint(self.kinds)


class PrivacyGuard:
    def __init__(self, config: PrivacyConfig) -> None:
        self.enabled = config.enabled
        self.max_scan_chars = config.max_scan_chars
        self.max_scan_s = config.max_scan_ms / 1e3
        self.detectors: list[Detector] = [*builtin_detectors(), *user_detectors(config.patterns)]
        # One search for every detector's triggers at once: most prompts hold none, and then only the detectors
        # without triggers run (one Python call per detector costs more than the search of all triggers).
        triggers = sorted({t for d in self.detectors for t in d.triggers}, key=len, reverse=True)
        self._any_trigger = re.compile("|".join(re.escape(t) for t in triggers)) if triggers else None
        self.kinds = kinds(self.detectors)
        self.views = Views(limit=3 * config.max_scan_chars)
        self._pool: ThreadPoolExecutor | None = None

    async def screen(self, body: object) -> Screening:
        """Screen a parsed JSON body without blocking the event loop for long; raises `NestingTooDeep`."""
        if not self.enabled:
            return Screening((), 0, 0.0, False)
        t0 = time.perf_counter()
        deadline = Deadline(t0 + self.max_scan_s)
        small = collect(body, min(INLINE_MAX_CHARS, self.max_scan_chars))
        if not small.over_budget or self.max_scan_chars <= INLINE_MAX_CHARS:
            return self._screening(small, deadline, t0, threaded=False)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="privacy-scan")
        job = asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(self.inspect, body, deadline, threaded=True)
        )
        try:
            return await asyncio.wait_for(job, 2 * self.max_scan_s)
        except TimeoutError:
            logger.warning("privacy scan still running after %.0f ms; the request is kept local", 2e3 * self.max_scan_s)
            return Screening((SCAN_TIMEOUT,), 0, time.perf_counter() - t0, True)

    def inspect(self, body: object, deadline: Deadline | None = None, *, threaded: bool = False) -> Screening:
        """`screen()` on the calling thread, whatever the size."""
        if not self.enabled:
            return Screening((), 0, 0.0, threaded)
        t0 = time.perf_counter()
        deadline = deadline or Deadline(t0 + self.max_scan_s)
        try:
            got = collect(body, self.max_scan_chars, deadline=deadline)
        except ScanTimeout:
            return Screening((SCAN_TIMEOUT,), 0, time.perf_counter() - t0, threaded)
        return self._screening(got, deadline, t0, threaded)

    def scan_payload(self, payload: object) -> list[str]:
        """The kinds `inspect()` finds in a parsed JSON body; [] when the guard is off."""
        return list(self.inspect(payload).kinds)

    def scan_text(self, text: str) -> list[str]:
        """Kinds found in one string (each once, in `self.kinds` order)."""
        if len(text) > self.max_scan_chars:
            return [UNSCANNED]
        return list(self._scan([text], [], Deadline.after(self.max_scan_s)))

    def close(self) -> None:
        """Stop the scan threads (queued scans are dropped; a running one finishes on its own)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _screening(self, got: Collected, deadline: Deadline, t0: float, threaded: bool) -> Screening:
        if got.over_budget:
            found: tuple[str, ...] = (UNSCANNED,)
        else:
            found = self._scan(got.parts, got.said, deadline) + ((TOKEN_IDS,) if got.token_ids else ())
        return Screening(found, got.chars, time.perf_counter() - t0, threaded)

    def _scan(self, parts: list[str], said: list[str], deadline: Deadline) -> tuple[str, ...]:
        found: set[str] = set()
        try:
            pieces = [self.views.normalize(p) for p in parts]
            if len(said) > 1:  # where messages meet: each message's first and last REACH characters, joined
                edges = [self.views.normalize(_edges(p)) for p in said]
                pieces += ["".join(edges), " ".join(edges)]  # maria.rossi@|example.org; 4111 1111|1111 1111
            text = "\n".join(pieces)
            if len(text) > self.views.limit:
                raise TooLong
            self._detect(text, found, deadline, [MAX_DECODED_CHARS], DECODE_DEPTH)
        except ScanTimeout:
            return (*self._ordered(found), SCAN_TIMEOUT)
        except TooLong:
            return (UNSCANNED,)
        return self._ordered(found)

    def _detect(self, text: str, found: set[str], deadline: Deadline, budget: list[int], decode: int) -> None:
        lower = lowered(text)
        triggered = self._any_trigger is not None and self._any_trigger.search(lower) is not None
        for detector in self.detectors:
            if detector.triggers and not triggered:
                continue  # its found() would stop at its triggers
            if detector.kind not in found and detector.found(text, lower, deadline):
                found.add(detector.kind)
            deadline.check()
        if decode > 0:
            for view in self.views.decoded(text, budget):
                self._detect(view, found, deadline, budget, decode - 1)

    def _ordered(self, found: set[str]) -> tuple[str, ...]:
        return tuple(kind for kind in self.kinds if kind in found)


def _edges(text: str) -> str:
    """The start and the end of a message (where a secret split across messages lies); all of a short one."""
    return text if len(text) <= 2 * REACH else text[:REACH] + "\n" + text[-REACH:]
