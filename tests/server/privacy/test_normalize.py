"""Unicode disguises undone, encodings decoded, and the bounds on both."""

from __future__ import annotations

import base64
import re
import sys
import unicodedata

import pytest

from server.privacy.normalize import CF_RANGES, MAX_DECODED_CHARS, TooLong, Views


@pytest.fixture(scope="module")
def views() -> Views:
    return Views(limit=10_000)


def test_every_format_character_is_stripped() -> None:
    cf = re.compile(f"[{CF_RANGES}]")
    missing = [
        hex(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf" and not cf.match(chr(c))
    ]
    assert missing == [], f"new Cf characters in Unicode {unicodedata.unidata_version}: add them to CF_RANGES"


def test_normalize(views: Views) -> None:
    assert views.normalize("maria\u200b.rossi＠ｅｘａｍｐｌｅ.org\u00ad") == "maria.rossi@example.org"
    assert views.normalize("415\u00a0555\u2009０１３２") == "415 555 0132"
    assert views.normalize("\U000e0068\U000e0069sk-\ufe0f") == "sk-"
    text = "plain ascii stays the same object"
    assert views.normalize(text) is text
    with pytest.raises(TooLong):
        views.normalize("\ufdfa" * 1000)  # 18 000 characters after NFKC


def test_decoded_views(views: Views) -> None:
    secret = "sk-proj-Qm7xT2vL9pR4sW8zK1nB5cF3hJ6gD0aE"
    budget = [MAX_DECODED_CHARS]
    assert secret in views.decoded("k=" + base64.b64encode(secret.encode()).decode(), budget)[0]
    assert secret in views.decoded(base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="), budget)[0]
    assert secret in views.decoded(secret.encode().hex(), budget)[0]
    assert views.decoded("mail maria%40example.org", budget)[0] == "mail maria@example.org"
    assert "maria@example.org" in views.decoded("maria&#64;example.org", budget)[0]
    assert views.decoded("internationalization and a long ABCDEFGHIJKLMNOPQRSTUVWXYZ run", budget) == []


def test_decoding_stops_at_the_budget(views: Views) -> None:
    encoded = base64.b64encode(b"maria@example.org " * 10).decode()
    budget = [len(encoded) // 2]
    assert "maria@example.org" in views.decoded(encoded, budget)[0]
    assert budget[0] <= 0 and views.decoded(encoded, budget) == []
