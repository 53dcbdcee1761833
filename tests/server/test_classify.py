"""The classifier as the request path sees it: its categories must be the router's, checked at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.app import start_classifier
from server.classify import check_labels
from server.config import CATEGORIES, ConfigError, parse_config

ARTIFACT = Path(__file__).parents[2] / "models" / "artifacts" / "classifier"


def test_the_shipped_artifact_predicts_the_routers_categories() -> None:
    check_labels(json.loads((ARTIFACT / "labels.json").read_text())["categories"], str(ARTIFACT))


def test_other_categories_are_an_error_naming_both_lists() -> None:
    labels = [c for c in CATEGORIES if c != "math"] + ["cooking"]
    with pytest.raises(ConfigError) as caught:
        check_labels(labels, "/tmp/old-artifact")
    message = str(caught.value)
    assert "/tmp/old-artifact" in message and str(sorted(labels)) in message and str(sorted(CATEGORIES)) in message
    with pytest.raises(ConfigError):
        check_labels([*CATEGORIES, "math"], "dup")  # the same set, one label twice: columns would not line up


async def test_start_up_fails_on_a_mismatch_instead_of_falling_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.classifier import PromptClassifier

    def load(*args: Any, **kwargs: Any) -> SimpleNamespace:  # an artifact trained on other categories
        return SimpleNamespace(labels=["spam", "ham"])

    monkeypatch.setattr(PromptClassifier, "load", load)
    config = parse_config(
        {"classifier": {"kind": "minilm", "device": "cpu"}, "models": [{"name": "a", "endpoints": ["http://h:1/v1"]}]}
    )
    with pytest.raises(ConfigError, match="spam"):
        await start_classifier(config)
