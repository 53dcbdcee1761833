"""`triage profile`: YAML patching that keeps comments, and a live measurement of a simulated engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli.profile import ProfileError, main, measure, patch_profile
from server.config import load_config, parse_config
from server.sim.runner import serve_engines
from server.sim.spec import SimEngineSpec
from tests.server.conftest import free_port, sim_model

CONFIG = """\
models:
  - name: a   # first
    endpoints: ["http://127.0.0.1:1/v1"]
    profile:
      quality: {code: 0.5}
      decode_tok_per_s: 10   # old
  - name: b
    endpoints: ["http://127.0.0.1:2/v1"]

policy:
  name: triage
"""


def test_patch_profile_replaces_inserts_and_keeps_comments(tmp_path: Path) -> None:
    text = patch_profile(CONFIG, "a", {"decode_tok_per_s": 181.8, "base_ttft_ms": 13.4})
    text = patch_profile(text, "b", {"decode_tok_per_s": 370.4})
    assert "# first" in text and "policy:" in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    config = load_config(path)
    a, b = config.models
    assert a.profile.decode_tok_per_s == 181.8 and a.profile.base_ttft_ms == 13.4 and a.profile.quality == {"code": 0.5}
    assert b.profile.decode_tok_per_s == 370.4
    with pytest.raises(ProfileError, match="not found"):
        patch_profile(CONFIG, "zzz", {"decode_tok_per_s": 1.0})


async def test_measure_a_simulated_engine() -> None:
    config = parse_config({"models": [sim_model("x", ["chat"], free_port(), time_scale=1.0)]})
    cluster = await serve_engines([m.simulated for m in config.models if isinstance(m.simulated, SimEngineSpec)])
    try:
        numbers = await measure(cluster.base_url("x"), "x", repeats=2, concurrency=8, timeout_s=30)
    finally:
        await cluster.stop()
    # qwen2.5-1.5b preset: base TTFT 33 ms, 2.7 ms per token alone
    assert 15 < numbers["base_ttft_ms"] < 150
    assert 100 < numbers["decode_tok_per_s"] < 600
    assert numbers["peak_decode_tok_per_s"] > numbers["decode_tok_per_s"]
    assert numbers["prefill_tok_per_s"] > 0


def test_a_launched_engine_without_a_fixed_port_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  - name: a\n    launch: {model: m}\n")
    assert main(["--config", str(path)]) == 2
    assert "a: no fixed endpoint; set launch.port" in capsys.readouterr().err
