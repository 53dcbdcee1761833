"""Config loading: validation errors name the bad key; ${ENV} interpolation; defaults."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.config import ConfigError, interpolate_env, load_config, parse_config

MODEL = {"name": "chat", "endpoints": ["http://127.0.0.1:8001/v1"]}


def test_demo_config_loads() -> None:
    config = load_config(Path(__file__).parents[2] / "configs" / "demo.yaml")
    assert [m.name for m in config.models] == ["coder", "chat", "fast"]
    assert all(m.kind == "simulated" and m.simulated for m in config.models)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"models": []}, "models"),
        ({"models": [{"name": "x"}]}, "models[0].endpoints"),
        ({"models": [{**MODEL, "endpoints": ["ftp://nope"]}]}, "models[0].endpoints"),
        ({"models": [{**MODEL, "name": "auto"}]}, "reserved"),
        ({"models": [MODEL, MODEL]}, "appears twice"),
        ({"models": [{**MODEL, "contxt_length": 5}]}, "models[0].contxt_length"),
        ({"models": [{**MODEL, "profile": {"quality": {"cooking": 0.5}}}]}, "unknown category 'cooking'"),
        ({"models": [{**MODEL, "profile": {"quality": {"code": 1.5}}}]}, "[0, 1]"),
        ({"server": {"port": 70000}, "models": [MODEL]}, "server.port"),
        ({"models": [{**MODEL, "capabilities": ["telepathy"]}]}, "models[0].capabilities"),
        (
            {"models": [{"name": "a", "capabilities": ["tools"], "launch": {"model": "m"}}]},
            "add --enable-auto-tool-choice --tool-call-parser hermes",
        ),
        (
            {"models": [{"name": "a", "launch": {"model": "m", "extra_args": ["--no-enable-prefix-caching"]}}]},
            "profile.prefix_caching: false",
        ),
        ([1, 2], "top level"),
    ],
)
def test_errors_name_the_bad_key(data: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert fragment in str(caught.value)


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_TEST_KEY", "sk-secret")
    config = parse_config(
        {"models": [{**MODEL, "api_key": "${TRIAGE_TEST_KEY}", "served_name": "${TRIAGE_UNSET_NAME:-qwen}"}]}
    )
    assert config.models[0].api_key == "sk-secret"
    assert config.models[0].upstream_name == "qwen"


def test_missing_env_var_names_key_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIAGE_NOT_SET", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": [{**MODEL, "api_key": "${TRIAGE_NOT_SET}"}]})
    assert "models[0].api_key" in str(caught.value) and "TRIAGE_NOT_SET" in str(caught.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(blacklist_characters="$")),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    )
)
def test_interpolation_leaves_plain_values_unchanged(tree: object) -> None:
    assert interpolate_env(tree, {}) == tree


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8) | st.integers(), max_size=4))
def test_arbitrary_mappings_never_escape_as_other_errors(data: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(data)


def test_a_launched_model_with_tool_flags_may_declare_tools() -> None:
    flags = ["--enable-auto-tool-choice", "--tool-call-parser=hermes"]
    launched = {"name": "a", "capabilities": ["tools"], "launch": {"model": "m", "extra_args": flags}}
    assert parse_config({"models": [launched]}).models[0].capabilities == ["tools"]
