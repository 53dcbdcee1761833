"""benchmarks/simrun.py: a policy over a LoadBoard, replaying a trace on simulated engines in virtual time."""

from __future__ import annotations

import math

from benchmarks.baselines import LeastBusyPolicy
from benchmarks.simrun import REJECTED, Cluster, RemoteSpeed, Shot, latency_summary, replay
from server.classify import Classification
from server.config import ModelConfig, PolicyConfig
from server.load import LoadBoard
from server.policy import RouteRequest
from server.sim.latency import LatencyModel
from server.sim.spec import SimEngineSpec

CHAT = Classification("general_qa", {"general_qa": 1.0}, 0.5)


def _models(cap: int = 512, remote: bool = False) -> list[ModelConfig]:
    models = [ModelConfig(name=n, endpoints=["http://127.0.0.1:1/v1"], max_in_flight=cap) for n in ("a", "b")]
    if remote:
        models.append(ModelConfig(name="r", endpoints=["http://127.0.0.1:1/v1"], remote=True, max_in_flight=cap))
    return models


def _shots(n: int, gap_s: float, output_tokens: int = 20) -> list[Shot]:
    return [Shot(i, i * gap_s, RouteRequest(str(i), CHAT, 100, 512), output_tokens) for i in range(n)]


def _specs() -> list[SimEngineSpec]:
    return [SimEngineSpec(name=n, port=0, gpu=n, shape="qwen2.5-7b") for n in ("a", "b")]


def test_light_load_is_served_at_idle_speed_and_accounted() -> None:
    load = LoadBoard()
    cluster = Cluster.build(_specs())
    shots = _shots(10, gap_s=1.0)
    served = replay(LeastBusyPolicy(_models(), load, PolicyConfig()), load, cluster, shots, end_s=12.0)
    idle_s = LatencyModel.from_shape("qwen2.5-7b").idle_ttft_ms(100) / 1e3
    for shot, s in zip(shots, served, strict=True):
        assert s.model in ("a", "b") and s.outcome == "ok"
        assert math.isclose(s.first_token_s - shot.arrival_s, idle_s)
        assert shot.arrival_s < s.done_s < shot.arrival_s + 1.0
    assert all(
        e.in_flight == e.in_flight_prompt_tokens == e.in_flight_output_tokens == 0 for e in load.engines.values()
    )
    assert load.engine("a").scraped_at_s == 12.0  # scraped on the virtual clock, every second
    assert load.engine("a").kv_cache_tokens == cluster.engines["a"].kv_cache_tokens  # capacity, as vLLM publishes
    summary = latency_summary(shots, served, 12.0, 0.5, ["a", "b"])
    assert summary["slo_attainment"] == 1.0 and summary["rejected_share"] == 0.0


def test_caps_refuse_and_remote_is_elastic() -> None:
    load = LoadBoard()
    cluster = Cluster.build(_specs(), {"r": RemoteSpeed(0.4, 80.0)})
    shots = _shots(20, gap_s=0.0, output_tokens=400)  # all at once, long answers
    policy = LeastBusyPolicy(_models(cap=5, remote=True), load, PolicyConfig(allow_remote=True))
    served = replay(policy, load, cluster, shots, end_s=30.0)
    by_model = [s.model for s in served]
    assert by_model.count("a") == by_model.count("b") == by_model.count(REJECTED) == 5
    remote = [s for s in served if s.model == "r"]
    assert len(remote) == 5 and all(s.first_token_s == 0.4 and s.done_s == 0.4 + 400 / 80 for s in remote)
    load = LoadBoard()
    cut = replay(LeastBusyPolicy(_models(), load, PolicyConfig()), load, Cluster.build(_specs()), shots, end_s=0.5)
    assert all(s.done_s == math.inf for s in cut)  # 400 tokens take longer than the cut
    assert latency_summary(shots, cut, 0.5, 10.0, ["a", "b"])["slo_attainment"] == 0.0
