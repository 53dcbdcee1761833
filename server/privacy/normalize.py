"""Undo the cheap disguises before the detectors look: Unicode tricks and encodings.

`normalize()` strips invisible characters (every Unicode format character, category Cf: zero-width spaces and
joiners, soft hyphens, bidi controls, tag characters; plus variation selectors, the combining grapheme joiner
and Hangul fillers) and applies NFKC, which maps fullwidth and other compatibility forms to plain ones (`＠` to
`@`, `４` to `4`, non-breaking and thin spaces to spaces). ASCII text is returned as it is (it has nothing to
undo). `Views.decoded()` gives the text again as a client might have encoded it: base64 and hex runs decoded
(only runs of 16 characters or more, only when the bytes are printable UTF-8 text, at most
`MAX_DECODED_CHARS` input characters per scan), percent-encoding and HTML entities undone around each escape.
Knows nothing about which kinds exist.
"""

from __future__ import annotations

import binascii
import contextlib
import html
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import unquote

# Unicode 14 (Python 3.11) format characters (Cf), then other invisibles: combining grapheme joiner, Hangul
# fillers, Khmer inherent vowels, Mongolian variation selectors, variation selectors. A test checks the Cf
# ranges against `unicodedata`, so a newer Python's additions show up as a failure, not a silent gap.
CF_RANGES = "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
CF_RANGES += "\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
CF_RANGES += "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
OTHER_INVISIBLE = "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u3164\uffa0\ufe00-\ufe0f\U000e0100-\U000e01ef"
MAX_DECODED_CHARS = 65_536  # base64/hex characters decoded per scan, in all
ESCAPE_REACH = 512  # characters decoded either side of a percent escape or an HTML entity
NFKC_CHUNK = 8192  # characters per unicodedata.normalize call (it holds the interpreter lock)


class TooLong(Exception):
    """NFKC grew the text past the limit (U+FDFA alone becomes 18 characters); the body is not scanned."""


def normalize(text: str, invisible: re.Pattern[str], limit: int) -> str:
    """`text` without invisible characters, in NFKC; `invisible` is `Views.invisible`; raises `TooLong` when
    the result would exceed `limit` characters."""
    if text.isascii():
        return text
    text = invisible.sub("", text)
    pieces: list[str] = []
    total, start = 0, 0
    while start < len(text):
        end = start + NFKC_CHUNK
        while end < len(text) and unicodedata.combining(text[end]):  # keep a letter and its marks together
            end += 1
        pieces.append(unicodedata.normalize("NFKC", text[start:end]))
        total += len(pieces[-1])
        if total > limit:
            raise TooLong
        start = end
    return "".join(pieces)


@dataclass
class Views:
    """Compiled once per guard; `decoded()` keeps the per-scan budget of base64/hex characters."""

    limit: int  # characters normalised text may grow to (NFKC expands some characters)

    invisible: re.Pattern[str] = field(default_factory=lambda: re.compile(f"[{CF_RANGES}{OTHER_INVISIBLE}]"))
    # A run of base64/base64url characters, starting where such a run starts, over wrapped lines too.
    runs: re.Pattern[str] = field(
        default_factory=lambda: re.compile(
            r"[A-Za-z0-9+/_-](?<![A-Za-z0-9+/_-][A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{15,}(?:\r?\n[A-Za-z0-9+/_-]{4,})*"
        )
    )
    percent: re.Pattern[str] = field(default_factory=lambda: re.compile(r"%[0-9A-Fa-f]{2}"))
    entity: re.Pattern[str] = field(
        default_factory=lambda: re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|\w{2,8});")
    )

    def normalize(self, text: str) -> str:
        return normalize(text, self.invisible, self.limit)

    def decoded(self, text: str, budget: list[int]) -> list[str]:
        """`text` as a client may have encoded it, undone: the neighbourhoods of percent escapes and of HTML
        entities (`ESCAPE_REACH` characters each side) decoded, and every base64/hex run that decodes to
        printable text; at most three texts, normalised. `budget` holds the base64/hex characters this scan
        may still decode (shared by all views, decremented here)."""
        views: list[str] = []
        if "%" in text:
            views.append("\n".join(unquote(part, errors="replace") for part in _around(self.percent, text)))
        if "&" in text:
            views.append("\n".join(html.unescape(part) for part in _around(self.entity, text)))
        plain: list[str] = []
        for run in self.runs.finditer(text):
            if budget[0] <= 0:
                break
            chunk = run.group(0).replace("\r", "").replace("\n", "")[: budget[0]]
            budget[0] -= len(chunk)
            decoded = _decode_run(chunk)
            if decoded is not None:
                plain.append(decoded)
        views.append("\n".join(plain))
        return [self.normalize(view) for view in views if view]


def _around(escape: re.Pattern[str], text: str) -> list[str]:
    """The parts of `text` within ESCAPE_REACH characters of an `escape` match, neighbouring parts merged."""
    spans: list[list[int]] = []
    for match in escape.finditer(text):
        start, end = max(0, match.start() - ESCAPE_REACH), match.end() + ESCAPE_REACH
        if spans and start <= spans[-1][1]:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [text[start:end] for start, end in spans]


def _decode_run(run: str) -> str | None:
    """The UTF-8 text a base64, base64url or hex run encodes; None when it encodes no printable text."""
    candidates: list[bytes] = []
    if len(run) >= 32 and len(run) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in run):
        candidates.append(bytes.fromhex(run))
    body = run.replace("-", "+").replace("_", "/")
    body = body[: len(body) - len(body) % 4] if len(body) % 4 == 1 else body + "=" * (-len(body) % 4)
    with contextlib.suppress(binascii.Error):  # not base64 after all
        candidates.append(binascii.a2b_base64(body))
    for raw in candidates:
        try:
            plain = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if plain and plain.replace("\n", " ").replace("\t", " ").replace("\r", " ").isprintable():
            return plain
    return None
