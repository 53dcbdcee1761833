"""Greedy forward selection of the task head's settings (models/task_cv.tune), with a scripted scorer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models import task_cv
from models.task_cv import CVResult, TaskSettings, tune

GRID: tuple[dict[str, Any], ...] = (
    {},
    {"class_weight_power": 1.0},
    {"family_weight_power": 1.0},
    {"head_chars": 150, "tail_chars": 150},
    {"l2_dense": 1e-3},
    {"l2_dense": 1e-5, "l2_lexical": 1e-5},
)


def _scripted(gains: dict[str, float], calls: list[TaskSettings]) -> Any:
    """A cross_validate stand-in whose macro-F1 is 0.5 + the gains of the settings that differ from defaults."""
    d = TaskSettings()

    def fake(settings: TaskSettings, *args: Any, **kwargs: Any) -> CVResult:
        calls.append(settings)
        f1 = 0.5
        f1 += gains["class"] if settings.class_weight_power != d.class_weight_power else 0.0
        f1 += gains["family"] if settings.family_weight_power != d.family_weight_power else 0.0
        f1 += gains["chars"] if settings.lexical.head_chars != d.lexical.head_chars else 0.0
        f1 += gains["l2"] if settings.fit.l2_dense != d.fit.l2_dense else 0.0
        return CVResult(settings, np.zeros((1, 1), np.float32), f1, f1)

    return fake


def _run(monkeypatch: pytest.MonkeyPatch, gains: dict[str, float], rounds: int) -> tuple[CVResult, list[Any], int]:
    calls: list[TaskSettings] = []
    monkeypatch.setattr(task_cv, "cross_validate", _scripted(gains, calls))
    z = np.zeros(1)
    best, table = tune(TaskSettings(), GRID, z, [""], z, z, z, z, ["a"], rounds=rounds)
    return best, table, len(calls)


def test_adds_compatible_changes_while_they_help(monkeypatch: pytest.MonkeyPatch) -> None:
    best, table, n_calls = _run(monkeypatch, {"class": 0.02, "family": 0.05, "chars": 0.03, "l2": -0.01}, 3)
    s = best.settings
    assert (s.family_weight_power, s.lexical.head_chars, s.class_weight_power) == (1.0, 150, 1.0)
    assert best.macro_f1 == pytest.approx(0.6)
    assert n_calls == len(table)  # every candidate scored once, even when two rounds build the same settings
    # round 1: the 6 candidates alone; round 2: family + the 4 that do not touch its keys; round 3: + chars
    assert len(table) == 6 + 4 + 3
    # the two l2 candidates share a key, so they are never combined with each other
    assert not any({"l2_dense", "l2_lexical"} <= set(r["changes"]) and r["changes"]["l2_dense"] == 1e-3 for r in table)


def test_stops_when_a_round_improves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    best, table, _ = _run(monkeypatch, {"class": -0.01, "family": 0.05, "chars": -0.02, "l2": -0.01}, 5)
    assert best.settings.family_weight_power == 1.0
    assert best.settings.class_weight_power == TaskSettings().class_weight_power
    assert len(table) == 6 + 4  # round 2 found nothing better: no round 3


def test_one_round_is_the_plain_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    _, table, _ = _run(monkeypatch, {"class": 0.02, "family": 0.05, "chars": 0.03, "l2": 0.0}, 1)
    assert [r["changes"] for r in table] == list(GRID)


def test_empty_grid_is_an_error() -> None:
    z = np.zeros(1)
    with pytest.raises(ValueError, match="empty"):
        tune(TaskSettings(), (), z, [""], z, z, z, z, ["a"])


def test_task_dense_appends_static_vectors_only_when_asked() -> None:
    dense, static = np.zeros((3, 5), dtype=np.float32), {150: np.ones((3, 4), dtype=np.float32)}
    assert task_cv.task_dense(TaskSettings(), dense, static) is dense
    both = task_cv.task_dense(TaskSettings(static_chars=150), dense, static)
    assert both.shape == (3, 9) and both[:, 5:].sum() == 12
    with pytest.raises(ValueError, match="computed for"):
        task_cv.task_dense(TaskSettings(static_chars=80), dense, static)
