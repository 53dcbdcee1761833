"""Specs from config files and cluster bookkeeping (the `triage sim-engine` command: tests/server/cli/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from server.sim.config import SimConfigError, specs_from_models, specs_from_yaml
from server.sim.runner import SimClusterError, serve_engines
from server.sim.spec import FaultSpec, SimEngineSpec
from tests.server.sim.simkit import StartCluster, spec


def test_spec_validation_messages() -> None:
    with pytest.raises(ValidationError, match="use a number in"):
        FaultSpec(error_rate=1.5)
    with pytest.raises(ValidationError, match="slowdown"):
        FaultSpec(slowdown=0)
    with pytest.raises(ValidationError, match="unknown shape"):
        SimEngineSpec(name="m", port=1, shape="llama-70b")
    with pytest.raises(ValidationError, match="loopback"):
        SimEngineSpec(name="m", port=1, host="0.0.0.0")
    with pytest.raises(ValidationError):
        SimEngineSpec(name="m", port=1, surprise=True)  # type: ignore[call-arg]


def test_specs_from_models() -> None:
    models: list[dict[str, Any]] = [
        {
            "name": "coder",
            "kind": "simulated",
            "endpoints": ["http://127.0.0.1:8101/v1"],
            "gpu": "g1",
            "context_length": 4096,
            "simulated": {"shape": "qwen2.5-7b", "max_num_seqs": 64},
        },
        {"name": "remote", "endpoints": ["https://api.example.com/v1"]},  # another kind: skipped
        {
            "name": "chat",
            "kind": "simulated",
            "served_name": "qwen-small",
            "base_url": "http://127.0.0.1:8102/v1",
            "simulated": {"shape": "qwen2.5-0.5b", "port": 9000},
        },
    ]
    a, b = specs_from_models(models)
    assert (a.name, a.port, a.gpu, a.max_model_len, a.max_num_seqs) == ("coder", 8101, "g1", 4096, 64)
    assert (b.name, b.port, b.gpu, b.shape) == ("qwen-small", 9000, "gpu0", "qwen2.5-0.5b")
    with pytest.raises(SimConfigError, match="no explicit port"):
        specs_from_models([{"name": "x", "kind": "simulated", "endpoints": ["http://127.0.0.1/v1"]}])
    with pytest.raises(SimConfigError, match="model 'x'"):
        specs_from_models(
            [{"name": "x", "kind": "simulated", "endpoints": ["http://127.0.0.1:1/v1"], "simulated": {"shape": "?"}}]
        )


def test_specs_from_yaml(tmp_path: Path) -> None:
    direct = tmp_path / "sim.yaml"
    direct.write_text(
        "sim_engines:\n  - {name: a, port: 8201, shape: tiny-fast}\n"
        "  - {name: b, port: 8202, faults: {error_rate: 0.5}}\n"
    )
    a, b = specs_from_yaml(direct)
    assert a.shape == "tiny-fast" and b.faults.error_rate == 0.5
    triage = tmp_path / "triage.yaml"
    triage.write_text("models:\n  - name: m\n    kind: simulated\n    endpoints: [http://127.0.0.1:8301/v1]\n")
    assert specs_from_yaml(triage)[0].port == 8301
    (tmp_path / "empty.yaml").write_text("models: []\n")
    with pytest.raises(SimConfigError, match="no simulated engines"):
        specs_from_yaml(tmp_path / "empty.yaml")


async def test_cluster_names(start_cluster: StartCluster) -> None:
    with pytest.raises(SimClusterError, match="unique"):
        await serve_engines([spec("a"), spec("a")])
    cluster = await start_cluster(spec("a", gpu="g"), spec("b", gpu="g"), spec("c", gpu="h"))
    assert sorted(cluster.gpus) == ["g", "h"] and cluster.gpus["g"].engines == ["a", "b"]
    assert cluster.base_url("c").startswith("http://127.0.0.1:")
    with pytest.raises(SimClusterError, match="no simulated engine 'z'"):
        cluster.port("z")


async def test_port_in_use(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(spec("a"))
    with pytest.raises(SimClusterError, match="cannot listen"):
        await serve_engines([spec("b", port=cluster.port("a"))])
