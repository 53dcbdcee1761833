"""Issue 12, item 1: no detector is slower than linear. Each pathological input of max_scan_chars characters
(the runs that made the old e-mail and JWT patterns quadratic: `"a"*120000 + "@"` took 18 s) must scan within
20x the time of ordinary text of the same length. A relative bound, so a slow or busy machine fails neither;
a quadratic pattern at 200 000 characters is thousands of times slower, not twenty."""

from __future__ import annotations

import pytest

from benchmarks.privacy_guard import BODY_CHARS, PATHOLOGICAL, chat, ordinary_text, pathological_inputs, scan_s
from server.config import PrivacyConfig
from server.privacy import UNSCANNED, PrivacyGuard

N_CHARS = 200_000  # PrivacyConfig's default max_scan_chars
MAX_RATIO = 20


@pytest.fixture(scope="module")
def guard() -> PrivacyGuard:
    # No deadline to hide behind: the scan must finish, not fail closed.
    return PrivacyGuard(PrivacyConfig(max_scan_chars=N_CHARS + BODY_CHARS, max_scan_ms=600_000))


@pytest.fixture(scope="module")
def ordinary_s(guard: PrivacyGuard) -> float:
    assert guard.scan_payload(chat(ordinary_text(N_CHARS))) == []  # read in full, and clean
    return scan_s(guard, chat(ordinary_text(N_CHARS)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(PATHOLOGICAL))
def test_pathological_inputs_scan_in_linear_time(guard: PrivacyGuard, ordinary_s: float, kind: str) -> None:
    for name, text in pathological_inputs(N_CHARS)[kind].items():
        assert len(text) == N_CHARS
        assert UNSCANNED not in guard.scan_payload(chat(text)) or name.startswith("U+FDFA")  # NFKC makes it 18x
        ratio = scan_s(guard, chat(text), repeats=2) / ordinary_s
        assert ratio < MAX_RATIO, f"{kind} / {name!r}: {ratio:.1f}x ordinary text ({ordinary_s * 1e3:.1f} ms)"
