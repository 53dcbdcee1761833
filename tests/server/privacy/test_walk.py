"""The body as text: every key, string and number; token-id prompts; the budget; the nesting limit."""

from __future__ import annotations

import pytest

from server.errors import InvalidRequest, NestingTooDeep
from server.privacy.matching import Deadline, ScanTimeout
from server.privacy.walk import MAX_DEPTH, collect, is_token_ids


def test_keys_numbers_and_nested_strings() -> None:
    body = {"a": {"b": [1, 2.0, 2.5, True, None, "x"]}, "c": 4111111111111111, "role": "user"}
    got = collect(body, 1000)
    assert got.parts == ["a", "c", "4111111111111111", "user", "b", "1", "2", "x"]  # "role": a known field name
    assert got.said == ["x"]  # numbers, keys and structural values ("role") are not what someone said
    assert not got.over_budget and not got.token_ids
    assert collect([10**30, 4.5, 4e15], 100).parts == ["4000000000000000"]  # huge numbers, fractions: no text
    assert collect("maria@example.org", 100).parts == ["maria@example.org"]  # a bare string is a body too


def test_known_field_names_are_not_text_but_unknown_keys_are() -> None:
    got = collect({"max_tokens": 16, "metadata": {"sk-proj-0123456789abcdefghij": 1}}, 1000)
    assert "max_tokens" not in got.parts and "metadata" not in got.parts
    assert "sk-proj-0123456789abcdefghij" in got.parts


def test_everything_costs_budget() -> None:
    assert collect({"p": "x" * 100}, 50).over_budget
    assert collect([[]] * 100, 500).over_budget  # empty lists cost CONTAINER_CHARS each
    assert collect([True] * 100, 50).over_budget  # anything else at least one character
    assert not collect({"p": "x" * 10}, 50).over_budget


def test_the_walk_meets_the_deadline() -> None:
    with pytest.raises(ScanTimeout):
        collect([["x"] * 10] * 10, 10**6, deadline=Deadline(0.0))


def test_token_id_prompts() -> None:
    assert is_token_ids([1, 2, 3]) and is_token_ids([[1, 2], [3]])
    assert not is_token_ids("hi") and not is_token_ids([]) and not is_token_ids([True]) and not is_token_ids(["a"])
    got = collect({"prompt": [[40, 1101], [318]], "model": "auto"}, 1000)
    assert got.token_ids and "40" not in got.parts


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_nesting_past_the_limit_is_a_typed_400(depth: int) -> None:
    """Issue 12, item 11: ~1,000 levels raised RecursionError in the old recursive scan (a 500)."""
    body: object = "deep"
    for _ in range(depth):
        body = [body]
    with pytest.raises(NestingTooDeep) as info:
        collect({"x": body}, 10**9)
    assert isinstance(info.value, InvalidRequest) and info.value.status == 400
    assert str(MAX_DEPTH) in info.value.message and info.value.code == "nesting_too_deep"


def test_nesting_at_the_limit_is_read() -> None:
    body: object = "maria@example.org"
    for _ in range(MAX_DEPTH - 1):
        body = {"k": body}
    assert collect(body, 10**9).said == ["maria@example.org"]
