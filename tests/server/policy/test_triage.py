"""The triage policy's utility: eligibility, presets, per-request constraints, overflow, exploration bounds."""

from __future__ import annotations

import pytest

from server.config import ConfigError, PolicyConfig
from server.errors import NoEligibleModel
from server.load import LoadBoard
from server.policy import POLICIES
from server.policy.triage import TriagePolicy
from tests.server.policy.policykit import busy, commit, policy, remote_model, request, trio


def test_registered_under_triage() -> None:
    assert POLICIES["triage"] is TriagePolicy


def test_idle_engines_route_by_task_fit(board: LoadBoard) -> None:
    p = policy(load=board)
    code = p.choose(request("code"))
    assert code.model == "coder" and code.reason.startswith("code: coder")
    assert p.choose(request("creative_writing")).model == "chat"
    assert {c.model for c in code.candidates} == {"coder", "chat", "fast"}
    assert all(c.eligible and "ttft_ms" in c.terms and "quality" in c.terms for c in code.candidates)
    assert code.fallbacks == ["chat", "fast"] and not code.overflow and not code.explored


def test_busy_code_model_sends_code_elsewhere_and_says_why(board: LoadBoard) -> None:
    p = policy(load=board)
    busy(board, "coder", 400)  # beyond max_num_seqs 256: a queue
    decision = p.choose(request("code"))
    assert decision.model == "chat"
    assert "coder fits better but is busier" in decision.reason
    coder = next(c for c in decision.candidates if c.model == "coder")
    assert coder.terms["ttft_ms"] > 1000
    busy(board, "coder", 0)
    assert p.choose(request("code")).model == "coder"


def test_eligibility_allow_list_health_context_and_capabilities(board: LoadBoard) -> None:
    p = policy(load=board)
    assert p.choose(request("code", models=["fast"])).model == "fast"
    board.mark_unhealthy("coder", "health check failed")
    decision = p.choose(request("code"))
    assert decision.model != "coder"
    assert not next(c for c in decision.candidates if c.model == "coder").eligible
    board.mark_healthy("coder")
    too_long = request("code", prompt_tokens=40_000)
    with pytest.raises(NoEligibleModel):
        p.choose(too_long)
    needs_vision = request("code")
    needs_vision.needs = frozenset({"vision"})  # the demo's Qwen2.5 models serve tools and JSON mode, not images
    with pytest.raises(NoEligibleModel, match=r"no model can serve vision: add 'vision' to models\[0\]\.capabilities"):
        p.choose(needs_vision)


def test_a_capability_no_model_declares_names_the_key_that_would_fix_it(board: LoadBoard) -> None:
    bare = [m.model_copy(update={"capabilities": []}) for m in trio()]
    needs_tools = request("code")
    needs_tools.needs = frozenset({"tools", "json_mode"})
    with pytest.raises(NoEligibleModel) as caught:
        policy(bare, board).choose(needs_tools)
    message = caught.value.message
    assert message.startswith(
        "no model can serve json_mode and tools: add 'json_mode' to models[0].capabilities (vLLM serves "
    )
    assert "add 'tools' to models[0].capabilities (vLLM needs --enable-auto-tool-choice --tool-call-parser hermes" in (
        message
    )
    assert caught.value.code == "capability_not_configured"
    only_chat = request("code", models=["chat"])  # the first model the capability alone rules out is named
    only_chat.needs = frozenset({"tools"})
    with pytest.raises(NoEligibleModel, match=r"models\[1\]\.capabilities"):
        policy(bare, board).choose(only_chat)
    with_tools = [bare[0], bare[1].model_copy(update={"capabilities": ["tools"]}), bare[2]]
    tools_only = request("code")
    tools_only.needs = frozenset({"tools"})
    assert policy(with_tools, board).choose(tools_only).model == "chat"  # the one model that declares it
    embeddings = request("code")
    embeddings.needs = frozenset({"embeddings"})  # no embedding model among them
    with pytest.raises(NoEligibleModel, match="not an embedding model"):
        policy(trio(), board).choose(embeddings)


def test_presets_and_weights_trade_quality_for_speed(board: LoadBoard) -> None:
    p = policy(load=board)
    long_answer = {"max_tokens": 1024}
    assert p.choose(request("general_qa", **long_answer)).model == "chat"  # balanced: quality pays
    assert p.choose(request("general_qa", priority="speed", **long_answer)).model == "fast"
    assert p.choose(request("general_qa", priority="quality", **long_answer)).model == "chat"
    latency_only = {"quality": 0.0, "latency": 1.0, "cost": 0.0}
    assert p.choose(request("code", weights=latency_only, **long_answer)).model == "fast"
    assert policy(load=board, preset="speed").choose(request("general_qa", **long_answer)).model == "fast"


def test_cost_preset_prefers_cheap_gpu_time_when_quality_is_close(board: LoadBoard) -> None:
    p = policy(load=board)
    # math: coder 0.78 vs fast 0.642; cost pays for the smaller model only under the cost preset
    assert p.choose(request("math", complexity=0.0, priority="cost", max_tokens=1024)).model != "coder"


def test_max_cost_rules_out_expensive_models(board: LoadBoard) -> None:
    p = policy(load=board)
    costs = {c.model: c.terms["cost_usd"] for c in p.choose(request("code")).candidates}
    assert costs["fast"] < costs["coder"]
    decision = p.choose(request("code", max_cost=(costs["fast"] + costs["coder"]) / 2))
    assert decision.model == "fast"
    assert "max_cost" in next(c for c in decision.candidates if c.model == "coder").reason
    with pytest.raises(NoEligibleModel):
        p.choose(request("code", max_cost=costs["fast"] / 2))


def test_max_latency_overflows_to_remote_when_allowed(board: LoadBoard) -> None:
    models = [*trio(), remote_model()]
    local_only = policy(models=models, load=board)
    missed = local_only.choose(request("code", max_latency_ms=50))
    assert missed.model in ("coder", "chat", "fast") and not missed.overflow
    assert "max_latency_ms 50" in missed.reason and "remote is not allowed" in missed.reason
    lifted = local_only.choose(request("code", max_latency_ms=50, allow_remote=True))
    assert lifted.model != "remote"  # policy.allow_remote: false is a ceiling no request lifts
    remote_ok = policy(models=models, load=board, allow_remote=True)
    decision = remote_ok.choose(request("code", max_latency_ms=50))
    assert decision.model == "remote" and decision.overflow
    assert decision.reason.startswith("code: overflow to remote remote: no local model meets max_latency_ms")
    assert remote_ok.choose(request("code", max_latency_ms=50, allow_remote=False)).model != "remote"  # opted out
    relaxed = remote_ok.choose(request("code", max_latency_ms=60_000))
    assert relaxed.model == "coder" and not relaxed.overflow  # local first whenever local meets the target


def test_overload_overflows_only_when_allowed(board: LoadBoard) -> None:
    models = [*trio(), remote_model()]
    for name in ("coder", "chat", "fast"):
        busy(board, name, 400)
    assert policy(models=models, load=board, allow_remote=True).choose(request("code")).overflow
    decision = policy(models=models, load=board).choose(request("code"))
    assert decision.model != "remote" and "best effort" in decision.reason
    private = request("code", allow_remote=True)
    private.local_only = True
    assert policy(models=models, load=board, allow_remote=True).choose(private).model != "remote"
    board.mark_unhealthy("coder", "down")
    board.mark_unhealthy("chat", "down")
    board.mark_unhealthy("fast", "down")
    healthy_none = policy(models=models, load=board, allow_remote=True).choose(request("code"))
    assert healthy_none.model == "remote" and "no healthy local model" in healthy_none.reason


def test_exploration_share_is_bounded_and_stays_eligible(board: LoadBoard) -> None:
    p = policy(load=board, explore_share=0.02)
    n = 10_000
    explored = 0
    for i in range(n):
        decision = commit(p, request("code", rid=f"r{i}", models=["coder", "chat"]))
        assert decision.model in ("coder", "chat")
        explored += decision.explored
    assert 0 < explored / n <= 0.02 + 0.005


def test_exploration_never_picks_an_ineligible_model(board: LoadBoard) -> None:
    p = policy(load=board, explore_share=0.2)
    board.mark_unhealthy("chat", "down")
    for i in range(2000):
        assert commit(p, request("creative_writing", rid=f"r{i}")).model != "chat"


def test_zero_explore_share_never_explores(board: LoadBoard) -> None:
    p = policy(load=board, explore_share=0.0)
    assert not any(commit(p, request("code", rid=f"r{i}")).explored for i in range(2000))


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"policy\.options\.latency_scal_s: Extra inputs"):
        TriagePolicy(trio(), LoadBoard(), PolicyConfig(name="triage", options={"latency_scal_s": 1}))


def test_choose_is_pure_and_commit_books(board: LoadBoard) -> None:
    p = policy(load=board, explore_share=0.2)
    state = p.explorer.rng.getstate()
    r = request("code", rid="dry")
    for _ in range(50):
        p.choose(r)
    assert p.explorer.rng.getstate() == state and not p.recent  # no draw, nothing remembered
    assert not p.feedback("dry", 0.0)  # a decision never committed cannot be rated
    commit(p, r)
    assert "dry" in p.recent


def test_every_priority_has_preset_weights() -> None:
    from typing import get_args

    from server.policy.presets import PRESETS
    from server.protocol import Priority

    assert set(PRESETS) == set(get_args(Priority))
