"""The privacy guard: finds secrets and personal data in a request body so the request stays on local models.

Detects e-mail addresses, phone numbers, payment card numbers (Luhn-checked), IBANs (mod-97-checked), common
API keys and tokens (AWS, GitHub, OpenAI/Anthropic `sk-`, Slack, Google, Stripe, JWTs), private-key blocks,
`password=`-style assignments, and any extra patterns from `privacy.patterns`. It scans every string in the
body (all messages, tool definitions, extra fields), not only the last user turn. Findings are *kinds* only:
the matched text never leaves this module, so nothing found can reach a log, a header or the decision store.

Fast because it runs on every request: regexes compiled once per app, each behind a cheap substring trigger
(`"@" in text` before the e-mail regex), and a bounded scan — a body longer than `max_scan_chars` is not
scanned but kept local as `unscanned`. A false positive only keeps a request local, so patterns lean wide.
Knows nothing about routing or HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import PrivacyConfig

UNSCANNED = "unscanned"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: str) -> bool:
    digits = "".join(ch for ch in match if ch.isdigit())
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def iban_ok(text: str) -> bool:
    iban = text.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _phone(match: str) -> bool:
    digits = sum(ch.isdigit() for ch in match)
    if not 9 <= digits <= 15:
        return False
    # A leading + or (area) is a phone; otherwise ask for at least two separators, as in 555-123-4567.
    return match[0] in "+(" or sum(ch in " -." for ch in match) >= 2


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    pattern: re.Pattern[str]
    trigger: re.Pattern[str] | None = None  # searched in the lower-cased text first; no hit: no regex run
    check: Callable[[str], bool] | None = None  # validates a match (checksums); None: any match counts

    def found(self, text: str, lower: str) -> bool:
        if self.trigger is not None and self.trigger.search(lower) is None:
            return False
        if self.check is None:
            return self.pattern.search(text) is not None
        return any(self.check(m.group(0)) for m in self.pattern.finditer(text))


def builtin_detectors() -> list[Detector]:
    """The built-in kinds, compiled (call once per app, never at import)."""
    c = re.compile
    return [
        Detector("private_key", c(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----"), c("-----begin")),
        Detector(
            "aws_key",
            c(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"),
            c("akia|asia|agpa|aida|aroa|anpa|anva|aipa"),
        ),
        Detector("aws_secret", c(r"(?i)aws.{0,20}secret.{0,20}[=:\"' ]\s*[A-Za-z0-9/+=]{40}\b"), c("secret")),
        Detector(
            "github_token",
            c(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
            c("gh[pousr]_|github_pat_"),
        ),
        Detector("openai_key", c(r"\bsk-(?:proj-|svcacct-|admin-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{20,}"), c("sk-")),
        Detector(
            "slack_token",
            c(r"\bxox[abposr]-[A-Za-z0-9-]{10,}|hooks\.slack\.com/services/[A-Za-z0-9/]+"),
            c("xox|hooks\\.slack"),
        ),
        Detector("google_api_key", c(r"\bAIza[0-9A-Za-z_-]{35}"), c("aiza")),
        Detector("stripe_key", c(r"\b[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}"), c("k_live_|k_test_")),
        Detector("jwt", c(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), c("eyj")),
        Detector(
            "password",
            c(
                r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
                r"\s*[:=]\s*[\"']?[^\s\"',;]{6,}"
            ),
            c("pass|pwd|secret|key|token"),
        ),
        Detector("email", c(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), c("@")),
    ]


# Numbers: one pass finds runs of 9+ digits and separators; only those runs are checked as cards and phones,
# and the text around them as an IBAN (whose check digits follow the two-letter country code).
_NUMBER_RUN = re.compile(r"\d[\d ().-]{7,}\d")
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_PHONE = re.compile(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,5}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_IBAN_REACH = 12  # characters before a digit run where an IBAN's country code and check digits may start


def number_kinds(text: str) -> list[str]:
    kinds: list[str] = []
    for run in _NUMBER_RUN.finditer(text):
        start, end = run.span()
        span = text[max(0, start - 1) : end]
        if span[0] not in "+(":
            span = span[1:]  # keep only a leading + or ( for the phone check
        if "card_number" not in kinds and any(_card(m.group(0)) for m in _CARD.finditer(span)):
            kinds.append("card_number")
        if "phone" not in kinds and any(_phone(m.group(0)) for m in _PHONE.finditer(span)):
            kinds.append("phone")
        if "iban" not in kinds and any(
            iban_ok(m.group(0)) for m in _IBAN.finditer(text, max(0, start - _IBAN_REACH), min(len(text), end + 40))
        ):
            kinds.append("iban")
    return kinds


class PrivacyGuard:
    def __init__(self, config: PrivacyConfig) -> None:
        self.enabled = config.enabled
        self.max_scan_chars = config.max_scan_chars
        self.detectors = builtin_detectors()
        self.detectors += [Detector(kind, re.compile(p)) for kind, p in config.patterns.items()]

    def scan_text(self, text: str) -> list[str]:
        """Kinds found in `text` (each at most once), in detector order."""
        if len(text) > self.max_scan_chars:
            return [UNSCANNED]
        lower = text.lower()
        kinds = [d.kind for d in self.detectors if d.found(text, lower)]
        return kinds + number_kinds(text)

    def scan_payload(self, payload: object) -> list[str]:
        """Kinds found in any string of a parsed JSON body; [] when the guard is off."""
        if not self.enabled:
            return []
        strings: list[str] = []
        if _collect(payload, strings, self.max_scan_chars + 1) < 0:
            return [UNSCANNED]
        return self.scan_text("\n".join(strings)) if strings else []


def _collect(node: object, out: list[str], budget: int) -> int:
    """Append every string under `node` to `out`; returns the budget left (< 0: over the limit)."""
    if isinstance(node, str):
        out.append(node)
        return budget - len(node) - 1
    if isinstance(node, dict):
        items: Iterable[object] = node.values()
    elif isinstance(node, list):
        items = node
    else:
        return budget
    for item in items:
        budget = _collect(item, out, budget)
        if budget < 0:
            return budget
    return budget
