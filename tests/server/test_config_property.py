"""Property: config parsing never crashes on arbitrary input (a `ConfigError` naming the problem, or a config),
and every valid config survives a dump/parse round trip."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.config import ConfigError, TriageConfig, parse_config

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=12))
keys = st.sampled_from(
    [
        "server",
        "models",
        "auth",
        "privacy",
        "breaker",
        "policy",
        "name",
        "endpoints",
        "mode",
        "patterns",
        "max_in_flight",
        "timeouts",
        "port",
        "host",
        "remote",
        "x",
    ]
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(data=trees)
def test_arbitrary_input_is_a_config_or_a_config_error(data: Any) -> None:
    try:
        config = parse_config(data)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(config, TriageConfig)


def _name(model: Any) -> str:
    return str(model["name"])


model = st.fixed_dictionaries(
    {
        "name": st.text("abcdefgh-_", min_size=1, max_size=8).filter(lambda n: n != "auto"),
        "endpoints": st.just(["http://127.0.0.1:8001/v1"]),
        "remote": st.booleans(),
        "max_in_flight": st.integers(1, 10_000),
        "timeouts": st.fixed_dictionaries({"connect_s": st.floats(0.01, 100), "total_s": st.floats(0.01, 1000)}),
    }
)
valid = st.fixed_dictionaries(
    {
        "models": st.lists(model, min_size=1, max_size=3, unique_by=_name),
        "server": st.fixed_dictionaries(
            {
                "host": st.sampled_from(["127.0.0.1", "0.0.0.0", "::1"]),
                "max_in_flight": st.integers(1, 10**5),
                "admission_wait_s": st.floats(0, 30),
            }
        ),
        "auth": st.fixed_dictionaries({"mode": st.sampled_from([None, "open", "keys"])}),
        "privacy": st.fixed_dictionaries(
            {"patterns": st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from([r"\d+", "x{2}", "[a-z]+"]))}
        ),
        "breaker": st.fixed_dictionaries({"failures": st.integers(1, 100), "cooldown_s": st.floats(0.01, 100)}),
    }
)


@settings(max_examples=200, deadline=None)
@given(data=valid)
def test_valid_configs_round_trip(data: dict[str, Any]) -> None:
    config = parse_config(data)
    assert parse_config(config.model_dump()) == config


def test_bad_privacy_pattern_names_the_key() -> None:
    try:
        parse_config({"models": [{"name": "m", "endpoints": ["http://x/v1"]}], "privacy": {"patterns": {"p": "("}}})
    except ConfigError as exc:
        assert "privacy.patterns" in str(exc) and "'p'" in str(exc)
    else:
        raise AssertionError("an invalid regex must be a ConfigError")
