"""The registry of built-in detectors and the wrapper for user patterns.

`builtin_detectors()` lists every built-in kind, credentials first (cheap: each behind a substring trigger),
then personal data (numbers are checked everywhere). A new kind is one more entry in `credentials.py` or
`personal.py`; `KINDS` names them all, in the order the guard reports them. Knows nothing about bodies.
"""

from __future__ import annotations

import re

from .credentials import credential_detectors
from .matching import USER_REACH, USER_WINDOW, Detector
from .personal import personal_detectors


def builtin_detectors() -> list[Detector]:
    """Every built-in kind, compiled (call once per guard, never at import)."""
    return [*credential_detectors(), *personal_detectors()]


def user_detectors(patterns: dict[str, str]) -> list[Detector]:
    """`privacy.patterns` (kind -> regex), searched window by window under the deadline."""
    return [
        Detector(kind, (re.compile(pattern),), window=USER_WINDOW, reach=USER_REACH)
        for kind, pattern in patterns.items()
    ]


def kinds(detectors: list[Detector]) -> list[str]:
    """The kinds of `detectors`, each once, in order."""
    return list(dict.fromkeys(d.kind for d in detectors))
