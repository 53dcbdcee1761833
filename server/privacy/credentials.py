"""Detectors for credentials: API tokens, private keys, bearer tokens and passwords.

Tokens are matched by their published prefixes and lengths (OpenAI/Anthropic `sk-`, AWS key ids in any case
and AWS secrets beside their name, GitHub, Slack, Google, Stripe, Hugging Face, GitLab, npm, JWTs), private
keys by their PEM header or, without one, by the base64 of the DER/OpenSSH preamble. Passwords are found in
assignments (`password = 'x'`, `"api_key": "x"`, `DB_PASS=x`), in phrases (`my password is hunter22`, `the wifi
password for the office is "x"`, `PIN: 1234`, a few other languages), in URLs (`scheme://user:pw@host`) and
after `Bearer`. What follows such a phrase must look like a password (quoted, or a mix of letters and digits,
symbols or inner capitals), not a word, a placeholder (`YOUR_API_KEY`, `****`) or code (`getpass()`,
`user.password`): that is what keeps "the password is stored hashed" clean. Knows nothing about where the
text came from.
"""

from __future__ import annotations

import re

from .matching import Detector, word_start

# Words that often follow "password is" / "password:" in prose, code and schemas and are no secret.
_NOT_SECRETS = frozenset(
    {"none", "null", "nil", "true", "false", "undefined", "required", "optional", "string", "str", "text"}
    | {"password", "passwd", "secret", "token", "hidden", "redacted", "masked", "empty", "example", "changed"}
    | {"incorrect", "correct", "invalid", "wrong", "stored", "hashed", "encrypted", "weak", "strong", "missing"}
    | {"blank", "same", "different", "expired", "reset"}
)
_CODE_CHARS = frozenset("()[]{}<>$%\\")
_KEYWORD_STEMS = ("pass", "pwd", "key", "token", "secret")
_PASSWORD_WORDS = (
    r"password|passwd|passphrase|passcode|pass ?word|pwd|pw|passwort|kennwort|mot de passe|contrase[ñn]a|senha|"
    r"пароль|密码|密碼|パスワード|비밀번호"
)
_KEY_WORDS = (
    r"client[_-]?secret|secret[_-]?(?:access[_-]?)?key|secret|api[_-]?key|apikey|access[_-]?token|"
    r"auth[_-]?token|refresh[_-]?token|private[_-]?key|token|db[_-]?pass|pass"
)
_PASSWORD_TRIGGERS = (
    "pass",
    "pwd",
    "pw",
    "secret",
    "key",
    "token",
    "пароль",
    "密",
    "パスワード",
    "비밀번호",
    "senha",
    "contrase",
    "kennwort",
)
_TOKEN = "A-Za-z0-9_-"  # a token's characters: a match may start only where a run of them starts


def has_digit_and_letter(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def secret_value(value: str, quoted: bool) -> bool:
    """Does the text after `password is` / `password =` look like a password rather than a word or code?"""
    value = value.rstrip(".,;:!?")
    if len(value) < 4 or value.lower() in _NOT_SECRETS or len(set(value)) == 1:
        return False
    if _CODE_CHARS.intersection(value) or re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", value):
        return False  # getpass(), ${PASSWORD}, user.password: code
    if value.replace("_", "").isupper():  # YOUR_API_KEY, MY_SECRET: a placeholder or a variable name
        return False
    lower = value.lower()
    if any(w in lower for w in _KEYWORD_STEMS) and not any(c.isdigit() for c in value):
        return False  # myPassword, your_api_key, Get-AuthToken: names of secrets, not secrets
    if quoted:
        return True
    symbols = any(not c.isalnum() and c not in "-_'." for c in value)
    inner_caps = any(c.isupper() for c in value[1:]) and any(c.islower() for c in value)
    return symbols or inner_caps or has_digit_and_letter(value)


def _password_check(match: re.Match[str], text: str) -> bool:
    start, end = match.span("value")
    return word_start(match, text) and secret_value(text[start:end], bool(match.group("quote")))


def _url_check(match: re.Match[str], text: str) -> bool:
    user, password = text[slice(*match.span("user"))], text[slice(*match.span("pw"))]
    return password != user and secret_value(password, quoted=True)


def _token_check(match: re.Match[str], text: str) -> bool:
    """API tokens are random: a digit and a letter in the body (rules out words such as `sk-some-long-name`)."""
    return has_digit_and_letter(match.group(0)[3:])


def _aws_id_check(match: re.Match[str], text: str) -> bool:
    """An access key id as AWS prints it (upper case), or any case if it holds a digit (not an English word)."""
    token = text[match.start() : match.end()]
    return token.isupper() or any(c.isdigit() for c in token[4:])


def _bearer_check(match: re.Match[str], text: str) -> bool:
    return secret_value(text[match.start() : match.end()].split()[-1], quoted=False)


def credential_detectors() -> list[Detector]:
    """API tokens, key material and passwords, compiled (once per guard, never at import)."""
    c = re.compile
    key_bodies = "IBADANBgkqhkiG9w0BAQEFAAS IBAAKCA IBAAKCB b3BlbnNzaC1rZXktdjE MHcCAQEEI MC4CAQAwBQYDK2VwBCIEI"
    key_bodies += " PuTTY-User-Key-File-"
    value = r"(?P<quote>[\"'`]?)(?P<value>[^\s\"'`,;]{4,128})"
    assignment = rf"(?:{_KEY_WORDS}|{_PASSWORD_WORDS})[\"']?\s{{0,3}}[:=]{{1,2}}\s{{0,3}}{value}"
    phrase = (  # my password is hunter22; the wifi password for the office is "x"; passwort ist x
        rf"(?:{_PASSWORD_WORDS})(?:\s{{1,3}}[\w@.-]{{1,24}}){{0,4}}?\s{{1,3}}"
        rf"(?:is|was|ist|est|es|é|是|为|は)(?:\s{{1,3}}(?:now|still))?\s{{0,3}}[:=]?\s{{0,3}}{value}"
    )
    return [
        Detector("private_key", (c(r"-{3,5} ?begin [a-z0-9 ]{0,40}private key"),), ("begin",), lower=True),
        # Header-less key bodies: the base64 of the DER/OpenSSH preamble (PKCS#8 RSA, PKCS#1 RSA, OpenSSH,
        # SEC1 EC, PKCS#8 Ed25519) and PuTTY's key files.
        Detector("private_key", (c(key_bodies.replace(" ", "|")),), tuple(key_bodies.lower().split())),
        Detector(
            "aws_key",  # any case: key ids are case-blind to a reader who upper-cases them again
            (c(r"a(?<![a-z0-9]a)(?:kia|sia|gpa|ida|roa|npa|nva|ipa|bia|cca)[a-z0-9]{16}(?![a-z0-9])"),),
            ("akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa", "abia", "acca"),
            _aws_id_check,
            lower=True,
        ),
        Detector(
            "aws_secret",  # the 40-character secret beside its name (alone it is any base64)
            (
                c(
                    r"aws[ _-]?secret(?:[ _-]?access)?(?:[ _-]?key)?[\"']?\s{0,4}(?:is|[:=])?\s{0,4}[\"']?"
                    r"[a-z0-9/+]{40}(?![a-z0-9/+])"
                ),
            ),
            ("aws",),
            lower=True,
        ),
        Detector(
            "github_token",
            (c(rf"gh[pousr]_(?<![{_TOKEN}]gh[pousr]_)[A-Za-z0-9]{{36}}|github_pat_[A-Za-z0-9_]{{22}}"),),
            ("gh", "github_pat_"),
        ),
        Detector("openai_key", (c(rf"sk-(?<![{_TOKEN}]sk-)[{_TOKEN}]{{20}}"),), ("sk-",), _token_check),
        Detector(
            "slack_token",
            (
                c(rf"xox[abposre]-(?<![{_TOKEN}]xox[abposre]-)[A-Za-z0-9-]{{10}}|xapp-\d-[A-Za-z0-9-]{{10}}"),
                c(r"hooks\.slack\.com/services/[A-Za-z0-9/]{8}"),
            ),
            ("xox", "xapp-", "hooks.slack"),
        ),
        Detector("google_api_key", (c(rf"AIza(?<![{_TOKEN}]AIza)[{_TOKEN}]{{35}}"),), ("aiza",)),
        Detector("stripe_key", (c(r"[rsp]k_(?:live|test)_[0-9A-Za-z]{16}"),), ("k_live_", "k_test_")),
        Detector(
            "hub_token",  # Hugging Face, GitLab, npm
            (c(r"hf_(?<![A-Za-z0-9]hf_)[A-Za-z0-9]{30}|glpat-[A-Za-z0-9_-]{20}|npm_[A-Za-z0-9]{36}"),),
            ("hf_", "glpat-", "npm_"),
            _token_check,
        ),
        Detector(
            "jwt",  # header.payload is enough; a header over 960 characters (embedded certificates) is missed
            (c(rf"eyJ(?<![{_TOKEN}]eyJ)[{_TOKEN}]{{8,960}}\.eyJ[{_TOKEN}]{{8}}"),),
            ("eyj",),
        ),
        Detector("bearer_token", (c(r"bearer\s{1,3}[a-z0-9._~+/=-]{16,512}"),), ("bearer",), _bearer_check, lower=True),
        Detector(
            "password",
            (c(assignment), c(phrase), c(rf"(?:{_PASSWORD_WORDS})\s{{1,3}}{value}")),  # the last: password x1
            _PASSWORD_TRIGGERS,
            _password_check,
            lower=True,
        ),
        Detector(
            "password",
            (c(r"pin(?: code| number)?\s{0,3}(?:is|[:=])\s{0,3}[\"']?\d{4,8}(?!\d)"),),
            ("pin",),
            word_start,
            lower=True,
        ),
        Detector(
            "password",
            (c(r"://(?<=[a-z0-9+.-]://)(?P<user>[^\s:/@]{1,64}):(?P<pw>[^\s:/@]{3,128})@"),),
            ("://",),
            _url_check,
            lower=True,
        ),
    ]
