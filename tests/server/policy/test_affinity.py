"""Conversation affinity: the map alone, then the triage policy preferring the engine that served the previous
turn, and leaving it when the load, the task or the time-to-live say so."""

from __future__ import annotations

from typing import Any

import httpx

from server.config import ModelConfig, parse_config
from server.inspect_request import estimate_prompt_tokens, message_prefixes
from server.load import LoadBoard
from server.policy import Outcome, RouteRequest
from server.policy.affinity import AffinityMap
from server.protocol import ChatCompletionRequest
from tests.server.conftest import free_port, run_triage, sim_model
from tests.server.policy.policykit import busy, commit, policy, request, trio


def test_the_map_finds_the_longest_prefix_each_model_served() -> None:
    m = AffinityMap(ttl_s=60.0, max_entries=10)
    m.record(11, "a", 0.0)
    m.record(22, "b", 1.0)
    prefixes = [(11, 100), (22, 300), (33, 500)]
    assert m.cached_tokens(prefixes, 2.0) == {"a": 100, "b": 300}
    m.record(11, "b", 3.0)  # the conversation moved: b holds the short prefix too, a nothing it can prove
    assert m.cached_tokens(prefixes, 4.0) == {"b": 300}
    assert m.cached_tokens([(44, 10)], 4.0) == {}
    assert m.cached_tokens(prefixes, 4.0) == {"b": 300}  # reads change nothing


def test_the_map_forgets_after_its_ttl_and_beyond_its_size() -> None:
    m = AffinityMap(ttl_s=10.0, max_entries=2)
    m.record(1, "a", 0.0)
    assert m.cached_tokens([(1, 5)], 10.0) == {"a": 5}
    assert m.cached_tokens([(1, 5)], 10.5) == {}  # expired, though still stored
    m.record(2, "a", 11.0)  # recording drops what expired
    assert len(m) == 1
    m.record(3, "a", 12.0)
    m.record(4, "a", 13.0)  # over max_entries: the oldest goes
    assert len(m) == 2 and m.cached_tokens([(2, 1)], 13.0) == {}
    off = AffinityMap(ttl_s=0.0, max_entries=2)
    off.record(1, "a", 0.0)
    assert len(off) == 0


# -- the policy -----------------------------------------------------------------------------------------------

TURN_1 = [
    {"role": "system", "content": "You are a helpful assistant. " * 150},  # ~1.1k tokens of instructions
    {"role": "user", "content": "Write a short poem about autumn leaves."},
]
TURN_2 = [
    *TURN_1,
    {"role": "assistant", "content": "Leaves of amber drift and fall ... " * 20},
    {"role": "user", "content": "Now make it rhyme."},
]


def turn(messages: list[dict[str, Any]], rid: str, category: str = "creative_writing", **options: Any) -> RouteRequest:
    body = ChatCompletionRequest.model_validate({"model": "auto", "messages": messages})
    r = request(category, rid=rid, prompt_tokens=estimate_prompt_tokens(body), **options)
    r.prefixes = message_prefixes(body)
    return r


def twins() -> list[ModelConfig]:
    """Two identical chat engines on separate GPUs: only affinity and load tell them apart."""
    chat = next(m for m in trio() if m.name == "chat")
    return [chat.model_copy(update={"name": name, "gpu": gpu}) for name, gpu in (("a", "0"), ("b", "1"))]


def test_a_follow_up_prefers_the_engine_that_served_the_previous_turn(board: LoadBoard) -> None:
    p = policy(twins(), board)
    assert p.choose(turn(TURN_2, "cold")).model == "a"  # no history: a tie, the first wins
    commit(p, turn(TURN_1, "t1", models=["b"]))
    decision = p.choose(turn(TURN_2, "t2"))
    assert decision.model == "b" and "continues the conversation" in decision.reason
    cached = {c.model: c.terms["cached_tokens"] for c in decision.candidates}
    assert cached["a"] == 0 and 1000 < cached["b"] < estimate_prompt_tokens(
        ChatCompletionRequest.model_validate({"model": "auto", "messages": TURN_2})
    )


def test_affinity_yields_to_load(board: LoadBoard) -> None:
    p = policy(twins(), board)
    commit(p, turn(TURN_1, "t1", models=["b"]))
    busy(board, "b", 300)  # b has a queue now: the saved prefill is worth less than the wait
    assert p.choose(turn(TURN_2, "t2")).model == "a"


def test_affinity_yields_to_the_task(board: LoadBoard) -> None:
    p = policy(trio(("0", "1", "2")), board)
    chit_chat = [{"role": "user", "content": "hi! how are you today?"}]
    commit(p, turn(chit_chat, "t1", "general_qa", models=["fast"]))
    code = [*chit_chat, {"role": "assistant", "content": "Fine!"}, {"role": "user", "content": "Write a B-tree."}]
    decision = p.choose(turn(code, "t2", "code"))
    assert decision.model == "coder"  # the small model has the history, the code model the skill
    assert next(c for c in decision.candidates if c.model == "fast").terms["cached_tokens"] > 0


def test_affinity_expires(board: LoadBoard) -> None:
    p = policy(twins(), board, options={"affinity_ttl_s": 60.0})
    p.clock = lambda: 1000.0
    commit(p, turn(TURN_1, "t1", models=["b"]))
    p.clock = lambda: 1059.0
    assert p.choose(turn(TURN_2, "t2")).model == "b"
    p.clock = lambda: 1061.0
    assert p.choose(turn(TURN_2, "t2")).model == "a"


def test_the_engine_that_answered_holds_the_conversation(board: LoadBoard) -> None:
    p = policy(twins(), board)
    assert commit(p, turn(TURN_1, "t1")).model == "a"
    p.observe("t1", "a", Outcome.ENGINE_FAILURE, 0.1)  # a failed before its first byte; b answered instead
    p.observe("t1", "b", Outcome.OK, 0.5)
    assert p.choose(turn(TURN_2, "t2")).model == "b"


def test_no_credit_where_the_engine_keeps_no_prefix_cache(board: LoadBoard) -> None:
    a, b = twins()
    b = b.model_copy(update={"profile": b.profile.model_copy(update={"prefix_caching": False})})
    p = policy([a, b], board)
    commit(p, turn(TURN_1, "t1", models=["b"]))
    assert p.choose(turn(TURN_2, "t2")).model == "a"


def test_choose_records_nothing(board: LoadBoard) -> None:
    p = policy(twins(), board)
    for _ in range(3):
        p.choose(turn(TURN_1, "dry", models=["b"]))  # a dry run (/v1/route) must not move later decisions
    assert len(p.affinity) == 0 and p.choose(turn(TURN_2, "t2")).model == "a"


def test_route_options_still_bind(board: LoadBoard) -> None:
    p = policy(twins(), board)
    commit(p, turn(TURN_1, "t1", models=["b"]))
    assert p.choose(turn(TURN_2, "t2", models=["a"])).model == "a"  # the request's allow list is a rule


def test_through_the_gateway_an_agent_loop_stays_on_its_engine() -> None:
    """Real HTTP: intake hashes the messages, commit books the engine, the next step of the loop finds it."""
    twin = {"shape": "qwen2.5-7b", "max_num_seqs": 64}
    models = [{**sim_model(name, ["chat"], free_port(), **twin), "capabilities": ["tools"]} for name in ("a", "b")]
    config = parse_config({"models": models, "policy": {"name": "triage", "explore_share": 0.0}})
    tools = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]
    step_1 = [{"role": "system", "content": "You are a coding agent. " * 100}, {"role": "user", "content": "Fix it."}]
    call = {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}
    step_2 = [*step_1, {"role": "assistant", "content": None, "tool_calls": [call]}]
    step_2.append({"role": "tool", "tool_call_id": "c1", "content": "def f(): ..."})
    with run_triage(config) as triage:

        def ask(messages: list[dict[str, Any]], **route: Any) -> httpx.Response:
            body = {"model": "auto", "max_tokens": 4, "messages": messages, "tools": tools}
            response = httpx.post(triage.base_url + "/v1/chat/completions", json={**body, **route}, timeout=30)
            assert response.status_code == 200, response.text
            return response

        assert ask(step_1, route={"models": ["b"]}).headers["x-triage-model"] == "b"
        follow_up = ask(step_2)
        assert follow_up.headers["x-triage-model"] == "b"
        assert "continues the conversation" in follow_up.headers["x-triage-reason"]
        other = [{"role": "system", "content": "You are a poet."}, {"role": "user", "content": "A haiku."}]
        assert ask(other).headers["x-triage-model"] == "a"  # another conversation: no history, the tie's first
