"""The privacy guard: finds secrets and personal data in a request body so that the request stays on local models.

Detects e-mail addresses, phone numbers, payment cards (Luhn), IBANs (mod-97), API tokens (OpenAI/Anthropic
`sk-`, AWS key ids and secrets, GitHub, Slack, Google, Stripe, Hugging Face, GitLab, npm, JWTs, bearer tokens),
private keys (PEM headers or header-less key bodies), passwords (`password=` assignments, "my password is
hunter22", PINs, `user:pw@` in URLs) and any extra patterns from `privacy.patterns`. It reads every string,
dict key and number in the body, after undoing Unicode tricks (zero-width and other format characters,
fullwidth forms: NFKC) and encodings (base64, hex, percent, HTML entities), each message alone and the
conversation joined. A false positive only keeps a request local, so the detectors lean wide where that is
cheap, and narrow where ordinary prompts would trip them (see `benchmarks/privacy_guard.py` for both rates).

Modules: `matching` (how a detector runs, the deadline), `credentials` and `personal` (the detectors),
`detectors` (their registry), `normalize` (undoing disguises), `walk` (the body as text) and `guard`
(`PrivacyGuard`, `Screening`, the thread pool).

What it cannot see, by design or by cost (such a request may reach a remote model):
- secrets described or spelled in words ("my card starts with four one one one", "the key is my dog's name"),
  split into pieces with words between them, or written in look-alike letters inside a token (a Cyrillic `ѕ`
  in `ѕk-`); an e-mail's domain in look-alike letters is still found;
- anything encrypted, compressed, or encoded other than base64/base64url/hex/percent/HTML entities (rot13,
  reversed text, a custom alphabet), and base64 beyond the first 65 536 characters of such runs per body;
- images, audio and files (a card photographed in an image part; the base64 of binary data);
- tokens of services it has no pattern for, high-entropy strings with no keyword beside them (a bare AWS secret
  key), passwords that are plain words ("my password is sunshine" reads like prose);
- numbers in shapes it does not know (a card split as 41 111 1111 ..., a phone with no separators and no phone
  word nearby), and whole-body context: the same 16 digits are a card here and an order number there;
- user patterns' matches longer than 256 characters across a 2 048-character window edge.
Knows nothing about routing or HTTP: the gateway decides what a finding means.
"""

from .guard import SCAN_TIMEOUT, TOKEN_IDS, UNSCANNABLE, UNSCANNED, PrivacyGuard, Screening
from .personal import iban_ok, luhn_ok
from .walk import MAX_DEPTH

__all__ = [
    "MAX_DEPTH",
    "SCAN_TIMEOUT",
    "TOKEN_IDS",
    "UNSCANNABLE",
    "UNSCANNED",
    "PrivacyGuard",
    "Screening",
    "iban_ok",
    "luhn_ok",
]
