"""Ensemble scorer: a weighted average of member scorers' probabilities.

    p(x) = sum_i weight_i * p_i(x) / sum_i weight_i

Members are any registered scorers (models/scorers/__init__.py builds and restores them); their arrays are
saved under `m<i>.<name>`; their confidence signals (models/gate.py) are passed on.
This module knows nothing about which members work well together.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from models.scorers.base import Scorer


class EnsembleScorer(Scorer):
    kind: ClassVar[str] = "ensemble"

    def __init__(self, members: list[Scorer], weights: list[float]) -> None:
        if not members or len(members) != len(weights) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"an ensemble needs >= 1 member and one non-negative weight each, got {weights}.")
        self.members, self.weights = members, [w / sum(weights) for w in weights]

    def predict(self, emb: np.ndarray) -> np.ndarray:
        out = sum(w * m.predict(emb) for m, w in zip(self.members, self.weights, strict=True))
        return np.asarray(out, dtype=np.float32)

    def predict_with_signals(self, emb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The weighted average, and every member's signals (the first member that gives a name wins)."""
        out: np.ndarray | None = None
        signals: dict[str, np.ndarray] = {}
        for m, w in zip(self.members, self.weights, strict=True):
            probs, sig = m.predict_with_signals(emb)
            out = w * probs if out is None else out + w * probs
            signals = {**sig, **signals}
        return np.asarray(out, dtype=np.float32), signals

    def config_json(self) -> dict[str, Any]:
        return {
            "members": [{"kind": m.kind, **m.config_json()} for m in self.members],
            "weights": [round(w, 6) for w in self.weights],
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"m{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.arrays().items()}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> EnsembleScorer:
        from models.scorers import restore_scorer  # the registry imports this module

        members = []
        for i, spec in enumerate(config["members"]):
            prefix = f"m{i}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            members.append(restore_scorer(spec, own))
        return cls(members, list(config["weights"]))
