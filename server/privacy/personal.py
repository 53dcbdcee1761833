"""Detectors for personal data: e-mail addresses, payment cards, phone numbers and IBANs.

E-mail: the regex starts at the '@' (a literal `re` jumps to), looks back one character for the local part
and forward over at most nine bounded labels, whose letters may be any script's (IDN, and look-alikes such as
`exаmple.org` with a Cyrillic а). `icon@2x.png` is a file name, not an address. Spelled-out forms count when
unambiguous: `maria [at] example [dot] org`, and `maria at example dot com` with a common top-level domain.

Numbers: each is a linear-time candidate regex (a digit, '+', '(' first; a fixed-width lookbehind so that a
match starts only where a number starts; bounded groups of digits split by separators that are not digits)
and a Python check on the candidate:

- cards: 13-19 digits whose first is 2-6 (Visa, Mastercard, Amex, Discover, JCB...), Luhn-valid and not one
  repeated digit, written unbroken, in equal groups with one repeated separator (`4111 1111 1111 1111`,
  `4111.1111.1111.1111`, `4-1-1-1...`) or as Amex/Diners 4-6-5/4-6-4. A random 16-digit number passes Luhn
  one time in ten, so the shapes are kept narrow; newlines never join groups (a column of years is no card).
- phones: `+` or `(area)` first, a NANP shape (`415-555-0132`, `415.555.0132`), or 10-15 digits in three or
  more groups split by `-`/`.` are phones as they stand; anything else (`4155550132`, `415 555 0132`,
  `07700 900123`, rows of a table) counts only with a phone word (phone, call me, mobile, WhatsApp, ...)
  within 48 characters before or 24 after. Dotted quads (IP addresses), ISBNs and numbers that begin with a
  date are not phones.
- IBANs: a known country code, the country's length and a mod-97 check, in any case, with or without
  separators.

Knows nothing about where the text came from.
"""

from __future__ import annotations

import functools
import re

from .matching import Detector

# IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FO", "GL", "NL", "SD"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["LY", "PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
}
_IBAN_DIGITS = {ord(ch): str(ord(ch) - 55) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}  # A -> "10" ... Z -> "35"
_PHONE_WORDS = (
    r"phone|tel\b|tel:|telephone|mobile|cell|whatsapp|signal|sms|text me|call me|call us|call at|ring me|reach me|"
    r"fax|landline|contact number|my number|number is|handy|t[ée]l[ée]phone|tel[ée]fono|telefone|телефон|电话|電話"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """Mod-97 check of an IBAN written in any case, with spaces, dots or dashes between groups."""
    iban = text.upper().replace(" ", "").replace("-", "").replace(".", "")
    if not (15 <= len(iban) <= 34 and iban.isalnum() and iban.isascii()):
        return False
    return int((iban[4:] + iban[:4]).translate(_IBAN_DIGITS)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _card_check(match: re.Match[str], text: str) -> bool:
    digits = _digits(match.group(0))
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _iban_check(match: re.Match[str], text: str) -> bool:
    at = match.start()  # the match is the check digits; the country code precedes them
    country = text[at - 2 : at]
    length = IBAN_LENGTHS.get(country.upper())
    return length is not None and _iban_prefix_ok(country + match.group(0) + match.group(1), length)


@functools.lru_cache(maxsize=4096)  # a body that repeats one candidate pays for it once
def _iban_prefix_ok(candidate: str, length: int) -> bool:
    compact = candidate.upper().replace(" ", "").replace("-", "").replace(".", "")
    return len(compact) >= length and iban_ok(compact[:length])


def _phone_shape(text: str) -> bool | None:
    """True: a phone as written; False: not a phone; None: a phone only with a phone word nearby."""
    digits = sum(ch.isdigit() for ch in text)
    if text[0] == "+":
        return 8 <= digits <= 15
    if not 9 <= digits <= 15:
        return False
    groups = re.split(r"[ .()-]+", text.strip("()"))
    if any(len(g) == 1 for g in groups[1:]) or re.match(r"(?:19|20)\d\d[-./]\d\d?[-./]\d", text):
        return False  # lists of digits, ISBNs (978-0-394-80001-9), dates
    if "." in text and all(len(g) <= 3 for g in groups) and len(groups) == 4 and "-" not in text:
        return False  # an IP address
    if text[0] == "(" or re.fullmatch(r"(?:1[.-])?\d{3}([.-])\d{3}\1\d{4}", text):
        return True  # (area) first, or NANP with dashes or dots (with spaces it could be a row of a table)
    if len(groups) >= 3 and " " not in text and digits >= 10 and len(groups[-1]) >= 3:
        return True  # 0049-30-901820, 020.7946.0958
    return None


def _phone_check(match: re.Match[str], text: str) -> bool:
    shape = _phone_shape(match.group(0))
    if shape is not None:
        return shape
    start, end = match.span()
    around = text[max(0, start - 48) : start] + " " + text[end : end + 24]
    return re.search(_PHONE_WORDS, around.lower()) is not None


def _card_patterns() -> list[re.Pattern[str]]:
    # Each starts with its first digit (a class `re` scans for quickly) and then looks behind it: not inside a
    # longer number, not the fraction of a decimal (0.4111...).
    first = r"[2-6](?<!\d[2-6])(?<!\d[.,][2-6])"
    sep = r"(?P<sep>[ .\-]{1,3})"
    shapes = [rf"{first}\d{{12,18}}", rf"3(?<!\d3)\d{{3}}{sep}\d{{6}}(?P=sep)\d{{4,5}}"]  # unbroken; Amex, Diners
    for k in (1, 2, 3, 4, 5):  # equal groups of k digits, at most 19 in all, maybe a shorter group last
        tail = rf"(?:(?P=sep)\d{{1,{k - 1}}})?" if k > 1 else ""
        shapes.append(rf"{first}\d{{{k - 1}}}{sep}\d{{{k}}}(?:(?P=sep)\d{{{k}}}){{1,{19 // k - 2}}}{tail}")
    return [re.compile(shape + r"(?!\d)") for shape in shapes]


def _email_check(match: re.Match[str], text: str) -> bool:
    """Not a file or package name: icon@2x.png, actions/cache@v3.When, git@github.com:org/repo."""
    at = match.start()
    if re.match(r"(?:\d{1,2}x|v\d{1,3})\.", text[at + 1 : at + 6]) is not None:
        return False
    return not (text[max(0, at - 4) : at] in {" git", "\ngit", "'git", '"git'} or text[:at] == "git")


def _spelled_email_check(match: re.Match[str], text: str) -> bool:
    """A local part right before the spelled '@' (`maria [at]`, `maria at`)."""
    before = text[max(0, match.start() - 4) : match.start()].rstrip()
    return bool(before) and (before[-1].isalnum() or before[-1] in "._+-")


def _spelled_email_patterns() -> list[re.Pattern[str]]:
    label = r"[^\W_][\w-]{0,62}"
    bracket = r"[\[({<]\s{0,2}%s\s{0,2}[\])}>]\s{0,3}"  # spaces before it: the check looks past them
    at, dot = bracket % "(?:at|@)", r"\s{0,3}" + bracket % r"(?:dot|\.)"
    spelled_dot = rf"(?:{dot}|\s{{1,3}}dot\s{{1,3}})"
    tlds = "com|org|net|edu|gov|mil|int|io|co|us|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|ru|cn|jp|kr|in|br|au|ca"
    tlds += "|mx|info|biz|me|tv|ai|app|dev|eu"
    return [
        # maria [at] example [dot] org, maria(at)example.org
        re.compile(rf"{at}{label}(?:(?:{spelled_dot}|\.){label}){{0,8}}?(?:{spelled_dot}|\.)[^\W\d_]{{2,24}}(?!\w)"),
        # maria at example dot com: only with a spelled dot and a common top-level domain ("look at the dot
        # product" is prose)
        re.compile(rf"\sat\s{{1,3}}{label}(?:{spelled_dot}{label}){{0,3}}?{spelled_dot}(?:{tlds})(?!\w)"),
    ]


def personal_detectors() -> list[Detector]:
    """E-mail, card, phone and IBAN detectors, compiled (once per guard, never at import)."""
    c = re.compile
    domain = r"[^\W_][\w-]{0,62}(?:\.[\w-]{1,63}){0,8}\.[^\W\d_]{2,24}"
    start = r"(?<![\w+.\-/][+(\d])"  # after the first character: not inside a word, a number or a path
    groups = r"(?:\d{1,6}[ .\-]{1,2}){0,4}\d{2,6}(?!\w|[.,]\d)"
    return [
        Detector("email", (c(rf"@(?<=[\w.+-]@){domain}"),), ("@",), _email_check),
        Detector(
            "email",
            tuple(_spelled_email_patterns()),
            ("at]", "at)", "at}", "at>", "@]", "@)", "@}", "@>", " dot ", "dot]", "dot)"),
            _spelled_email_check,
            lower=True,
        ),
        Detector("card_number", tuple(_card_patterns()), (), _card_check, gate=c(r"\d(?:[ .\-]{0,3}\d){12}")),
        Detector(
            "phone",
            (
                c(rf"\+{start}\s?\d{{1,3}}[ .\-]{{0,2}}(?:\(\d{{1,5}}\)[ .\-]{{0,2}})?{groups}"),
                c(rf"\({start}\d{{1,5}}\)[ .\-]{{0,2}}{groups}"),
                c(rf"\d{start}\d{{0,5}}[ .\-]{{1,2}}{groups}"),
                c(rf"\+{start}\d{{8,15}}(?!\d)"),
                c(rf"\d{start}\d{{8,14}}(?!\w|[.,]\d)"),
            ),
            (),
            _phone_check,
            gate=c(r"\d(?:[ ().\-]{0,3}\d){7}"),
        ),
        Detector(
            "iban",
            (
                # The check digits first (digits are rarer than letters), the country code behind them.
                c(r"\d\d(?<=(?<![a-z0-9])[a-z]{2}\d\d)(?=((?:[ .\-]?[a-z0-9]){11,32}))", re.ASCII),
            ),
            (),
            _iban_check,
            lower=True,
        ),
    ]
