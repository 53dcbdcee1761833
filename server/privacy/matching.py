"""How a detector runs: regexes behind substring triggers, a check per match, and a deadline.

Every built-in pattern runs in time linear in the text, because Python's `re` (a backtracking engine) is only
ever given patterns of these shapes:

- a literal or a narrow character class first, so `re` skips ahead cheaply and lookbehinds run only where that
  class matched (a lookbehind first costs about 8x on prose: 12 ms vs 1.5 ms on 200 000 characters), and no
  IGNORECASE: case-blind patterns are written in lower case and run on the lower-cased text (IGNORECASE
  costs about 8x on an alternation of keywords);
- bounded quantifiers (`{0,62}`, never `+` before a required suffix), so a failed start costs a constant;
- a fixed-width lookbehind that lets a match begin only where a run of its characters begins
  (`eyJ(?<![A-Za-z0-9_-]eyJ)`), so a long run costs one start, not one per character: the unbounded local
  part before '@' is what made `"a"*120000 + "@"` quadratic (18 s) before;
- neighbouring pieces drawn from disjoint classes (digits, then separators), so giving a character back never
  lets the next piece match instead.

Each `re` call sees a window of at most 17 408 characters, and the deadline is checked between windows and
every 256 matches whose check (Luhn, mod-97, "does this value look like a password") runs in Python. User
patterns (`privacy.patterns`) cannot be made linear by us: they run over 2 048-character windows (overlapping
by 256, so a longer match across a window edge is missed), which bounds a quadratic pattern to about 2 304²
steps per call; an exponential one (`(a+)+$`) can still hold the interpreter within one window, which no
thread can interrupt, so keep user patterns simple. Knows nothing about which kinds exist.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

CHECK_EVERY = 256  # matches between deadline checks in a Python loop
WINDOW = 16_384  # characters of text per `re` call (plus REACH)
REACH = 1024  # longest match of any built-in pattern (a JWT's header is cut at 960 characters)
USER_WINDOW, USER_REACH = 2048, 256  # the same for user patterns, whose cost we cannot bound


class ScanTimeout(Exception):
    """The scan ran past its deadline; the guard reports the body as unscannable (kept local)."""


@dataclass(frozen=True, slots=True)
class Deadline:
    at_s: float  # time.perf_counter() value after which the scan stops

    @staticmethod
    def after(budget_s: float) -> Deadline:
        return Deadline(time.perf_counter() + budget_s)

    def check(self) -> None:
        if time.perf_counter() > self.at_s:
            raise ScanTimeout


# A check of one match: (the match, the original text at the same indices) -> does it count?
Check = Callable[[re.Match[str], str], bool]


def lowered(text: str) -> str:
    """`text.lower()` with the same indices as `text` (a few letters lower-case to two characters: those stay
    as they are), so a match found in lower case points into the original."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(ch if len(low := ch.lower()) != 1 else low for ch in text)


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind: regexes behind substring triggers, with an optional check of each match (checksums, context).

    Each `re` call sees one window of the text (`window` + `reach` characters, neighbouring windows sharing
    `reach`): `re` holds the interpreter lock for a whole call, so this bounds how long the event loop can
    wait on a scan thread (about 9 ms for the slowest built-in pattern on its worst input). A match longer
    than `reach` across a window edge would be missed; every built-in pattern's longest match is shorter.
    """

    kind: str
    patterns: tuple[re.Pattern[str], ...]
    triggers: tuple[str, ...] = ()  # substrings of the lower-cased text; none present: no regex runs
    check: Check | None = None  # None: any match counts
    lower: bool = False  # the patterns are written in lower case and run on the lower-cased text
    gate: re.Pattern[str] | None = None  # searched once in the text first (like a trigger); no match: no patterns
    window: int = WINDOW  # characters between the starts of neighbouring windows
    reach: int = REACH  # characters neighbouring windows share: the longest match found across an edge

    def found(self, text: str, lower: str, deadline: Deadline) -> bool:
        """Whether `text` (normalised; `lower` is `lowered(text)`) holds one of this kind."""
        if self.triggers:
            for trigger in self.triggers:
                if trigger in lower:
                    break
            else:
                return False
        if self.gate is not None and self.gate.search(text) is None:
            return False
        subject = lower if self.lower else text
        last = max(1, len(text) - self.reach)  # windows start at 0, window, 2 * window, ... below this
        for pattern in self.patterns:
            for start in range(0, last, self.window):
                end = start + self.window + self.reach
                if self.check is None:
                    if pattern.search(subject, start, end) is not None:
                        return True
                else:
                    for i, match in enumerate(pattern.finditer(subject, start, end), 1):
                        if self.check(match, text):
                            return True
                        if i % CHECK_EVERY == 0:
                            deadline.check()
                if last > self.window:
                    deadline.check()
        return False


def word_start(match: re.Match[str], text: str) -> bool:
    """The match does not continue a word (`mypassword=` is no `password=`); for alternations of words, whose
    varying widths a fixed-width lookbehind cannot express."""
    start = match.start()
    return start == 0 or not text[start - 1].isalnum()
