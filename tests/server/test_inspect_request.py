"""What the router reads from a body: here, the message-prefix hashes behind conversation affinity."""

from __future__ import annotations

from typing import Any

from server.inspect_request import PREFIX_HASH_CHARS, estimate_prompt_tokens, message_prefixes
from server.protocol import ChatCompletionRequest, CompletionRequest

SYSTEM = {"role": "system", "content": "You are a coding agent. Use the tools."}
ASK = {"role": "user", "content": "Fix the failing test in tests/test_io.py"}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a.py"}'}}],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "def read(path): ..."}


def chat(*messages: dict[str, Any]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "auto", "messages": list(messages)})


def keys(request: ChatCompletionRequest) -> list[int]:
    return [key for key, _ in message_prefixes(request)]


def test_a_follow_up_carries_the_previous_turn_as_a_prefix() -> None:
    first = chat(SYSTEM, ASK)
    follow_up = chat(SYSTEM, ASK, CALL, RESULT)  # an agent's next step: the call it made and the tool's answer
    assert keys(follow_up)[:2] == keys(first)
    assert len(set(keys(follow_up))) == 4  # every prefix has its own hash
    prefixes = message_prefixes(follow_up)
    assert [t for _, t in prefixes] == sorted(t for _, t in prefixes)
    assert prefixes[-1][1] == estimate_prompt_tokens(follow_up)  # the whole list: the prompt estimate


def test_another_conversation_or_an_edited_turn_shares_no_prefix() -> None:
    base = keys(chat(SYSTEM, ASK, CALL, RESULT))
    other_ask = keys(chat(SYSTEM, {"role": "user", "content": "Fix the failing test in tests/test_db.py"}))
    assert other_ask[0] == base[0] and other_ask[1] != base[1]  # same system prompt, then apart
    other_call = dict(CALL, tool_calls=[{**CALL["tool_calls"][0], "id": "c2"}])
    assert keys(chat(SYSTEM, ASK, other_call))[2] != base[2]  # tool calls count
    other_result = dict(RESULT, tool_call_id="c2")
    assert keys(chat(SYSTEM, ASK, CALL, other_result))[3] != base[3]
    renamed = keys(chat(SYSTEM, {**ASK, "role": "assistant"}))
    assert renamed[1] != base[1]  # roles count


def test_long_messages_hash_by_length_head_and_tail() -> None:
    head, tail = "a" * PREFIX_HASH_CHARS, "z" * PREFIX_HASH_CHARS
    one = keys(chat({"role": "user", "content": head + "x" * 100_000 + tail}))
    same_ends = keys(chat({"role": "user", "content": head + "y" * 100_000 + tail}))
    longer = keys(chat({"role": "user", "content": head + "x" * 100_001 + tail}))
    other_tail = keys(chat({"role": "user", "content": head + "x" * 100_000 + "q" + tail[1:]}))
    assert one == same_ends  # the middle of a long message is not read: a collision costs one misplaced preference
    assert one != longer and one != other_tail


def test_completions_have_no_turns() -> None:
    request = CompletionRequest.model_validate({"model": "auto", "prompt": "def f(x):"})
    assert message_prefixes(request) == ()
