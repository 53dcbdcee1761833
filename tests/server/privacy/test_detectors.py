"""Each built-in kind found in its usual and its disguised forms, and the look-alikes that must stay clean.

These go through `PrivacyGuard.scan_text` / `scan_payload`, the API main already had, so they also run against
the old guard (which misses most `EVASIONS`, the corpus, keys, numbers and split messages, and crashes on deep
nesting)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.config import PrivacyConfig
from server.errors import InvalidRequest
from server.privacy import PrivacyGuard, iban_ok, luhn_ok

CORPUS = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "privacy_evasions.jsonl"

EVASIONS = {  # disguised values of each kind (issue 12, item 8), all published test values or made up
    "email": [
        "Contact maria.ro\u200bssi@exam\u200bple.org today.",
        "Contact maria.rossi＠example.org today.",
        "Reach me: maria.rossi [at] example [dot] org",
        "Reach me at maria.rossi at example dot com please.",
        "mailto:maria.rossi%40example.org",
        "Contact maria.rossi&#64;example.org for details.",
        "Contact maria@exаmple.org now.",  # a Cyrillic а in the domain
    ],
    "phone": ["Call me at 4155550132 after lunch.", "my mobile: 07700 900123", "Phone: 415\u00a0555\u00a00132"],
    "card_number": [
        "Charge card 4111.1111.1111.1111, expiry 12/27.",
        "card: 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "order 12 4111 1111 1111 1111 please",
        "amex 3782 822463 10005",
        "pay with ４１１１ １１１１ １１１１ １１１１",
    ],
    "iban": ["wire to de89 3704 0044 0532 0130 00", "iban FR14-2004-1010-0505-0001-3M02-606"],
    "aws_key": ["my key id is akiaiosfodnn7example", "AKIA\u200bIOSFODNN7EXAMPLE"],
    "openai_key": [
        "use sk-\u200bproj-Qm7xT2vL9pR4sW8zK1nB5cF3hJ6gD0aE",
        "token (base64): c2stcHJvai1RbTd4VDJ2TDlwUjRzVzh6SzFuQjVjRjNoSjZnRDBhRQ==",
        "token (hex): " + b"sk-proj-Qm7xT2vL9pR4sW8zK1nB5cF3hJ6gD0aE".hex(),
    ],
    "private_key": ["-----begin rsa private key-----", "MIIEpAIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPml"],
    "password": [
        "my password is hunter22",
        "the wifi password for the office is Tr0ub4dor&3",
        'my password is "sunshine"',
        "My PIN is 4821",
        "connect to postgres://admin:s3cr3tPw@db.internal:5432/app",
        "Mein Passwort ist Sommer2024!",
        "pass\u200bword: Xy7#pQ2!",
    ],
}
CLEAN = [  # look-alikes from ordinary prompts: each once tripped a draft of these detectors
    "the password is stored hashed",
    "Create an HTML page with a login form: username, password, and submit button.",
    "API_KEY = 'your_api_key'",
    "$global:authToken = Get-AuthToken -User $User",
    "look at the dot product of the two vectors",
    "I work at google.com",
    "retina icon@2x.png and actions/cache@v3.When it fails",
    "git clone git@github.com:org/repo",
    "the server listens on 192.168.100.200",
    "the ISBN number 978-0-394-80001-9",
    "2147483647 is the largest 32-bit int",
    "probabilities 0.4111111111111111 and 0.5555555555554444",
    "500 920 1420 and 17 other rows",
    "years 2019\n2020\n2021\n2022",
    "ref DE00 3704 0044 0532 0130 00",
    "order 4111 1111 1111 1112",
    "task-force-leadership-summary-2024",
]


@pytest.fixture(scope="module")
def guard() -> PrivacyGuard:
    return PrivacyGuard(PrivacyConfig())


@pytest.mark.parametrize(("kind", "text"), [(k, t) for k, texts in EVASIONS.items() for t in texts])
def test_disguised_values_are_found(guard: PrivacyGuard, kind: str, text: str) -> None:
    assert kind in guard.scan_text(text)


@pytest.mark.parametrize("text", CLEAN)
def test_lookalikes_stay_clean(guard: PrivacyGuard, text: str) -> None:
    assert guard.scan_text(text) == []


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("gb82-west-1234-5698-7654-32") and not iban_ok("GB83 WEST 1234 5698 7654 32")


def test_the_same_value_in_any_part_of_the_body_is_found(guard: PrivacyGuard) -> None:
    """Issue 12, item 7: keys at every level, numbers, nested strings (main scanned only string values)."""
    email, card = "maria.rossi@example.org", 4111111111111111
    bodies = [
        {"model": "auto", "metadata": {email: "customer"}},
        {"model": "auto", "response_format": {"json_schema": {"schema": {"properties": {email: {}}}}}},
        {"model": "auto", "logit_bias": {str(card): 5}},
        {"model": "auto", "metadata": {"card": card}},
        {"model": "auto", "metadata": {"card": float(card)}},
        {"model": "auto", "tools": [{"function": {"parameters": {"properties": {"x": {"enum": [[email]]}}}}}]},
    ]
    for body in bodies:
        assert guard.scan_payload(body), body


def test_split_across_messages(guard: PrivacyGuard) -> None:
    def body(*parts: str) -> dict[str, object]:
        return {"model": "auto", "messages": [{"role": "user", "content": p} for p in parts]}

    assert guard.scan_payload(body("write to maria.rossi@", "example.org")) == ["email"]
    assert guard.scan_payload(body("card 4111 1111", "1111 1111 exp 12/27")) == ["card_number"]
    assert guard.scan_payload(body("my key: sk-proj-Qm7xT2vL9pR4", "sW8zK1nB5cF3hJ6gD0aE")) == ["openai_key"]
    assert guard.scan_payload(body("I have 2 cats", "and 3 dogs")) == []


def test_evasion_corpus_is_kept_local() -> None:
    """Issue 12, item 8 (and 7): every committed evasion case is found, under the kind it plants."""
    cases = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    assert len(cases) >= 60
    guard = PrivacyGuard(PrivacyConfig())
    missed = [(c["id"], c["evasion"]) for c in cases if c["kind"] not in guard.scan_payload(c["body"])]
    assert missed == []


def test_deep_nesting_is_a_400_not_a_crash(guard: PrivacyGuard) -> None:
    """Issue 12, item 11: 1,000 levels raised RecursionError in the old recursive scan."""
    body: object = "x"
    for _ in range(1000):
        body = [body]
    with pytest.raises(InvalidRequest, match="nests more than 64 levels"):
        guard.scan_payload({"messages": body})
