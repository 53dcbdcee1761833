"""Model aliases: globs from the config, tried in order after the configured names."""

from __future__ import annotations

import pytest

from server.aliases import ModelAliases
from server.config import ConfigError, parse_config

from .conftest import free_port, sim_model


def config(aliases: dict[str, str]) -> dict[str, object]:
    return {
        "models": [sim_model("coder", ["code"], free_port()), sim_model("chat", ["chat"], free_port())],
        "aliases": aliases,
    }


def test_globs_in_order_after_exact_names() -> None:
    aliases = ModelAliases(
        parse_config(config({"gpt-5-codex*": "coder", "gpt-*": "auto", "claude-?-haiku": "chat", "chat*": "coder"}))
    )
    assert aliases.resolve("gpt-5-codex") == "coder"
    assert aliases.resolve("gpt-5-codex-mini") == "coder"
    assert aliases.resolve("gpt-4o") == "auto"
    assert aliases.resolve("claude-3-haiku") == "chat"
    assert aliases.resolve("claude-sonnet-4-5") == "claude-sonnet-4-5"  # no glob matches: left as sent (a 404)
    assert aliases.resolve("chat") == "chat"  # a configured name is never aliased
    assert aliases.resolve("auto") == "auto"
    assert aliases.resolve("GPT-4o") == "GPT-4o"  # case-sensitive


def test_an_alias_must_point_at_a_model_or_auto() -> None:
    with pytest.raises(ConfigError, match=r"'claude-\*' points at 'sonnet', which is no model"):
        parse_config(config({"claude-*": "sonnet"}))
