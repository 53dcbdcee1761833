"""Quality scorers: prompt embedding [B, D] -> P(good answer) per model [B, M]; one registry for all kinds.

A *spec* is a JSON-able dict `{"kind": <name>, **config fields}` (an ensemble: `{"kind": "ensemble",
"members": [spec, ...], "weights": [...]}`). `fit_scorer(spec, data)` trains one; `restore_scorer(config,
arrays)` rebuilds a saved one. To add a kind: write a module with a frozen config dataclass and a `Scorer`
subclass that has `fit(data, config)`, then add it to `SCORERS`.
This package knows nothing about files, calibration, splits or routing rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.scorers.base import Scorer, TrainSet
from models.scorers.contrastive import ContrastiveConfig, ContrastiveScorer
from models.scorers.ensemble import EnsembleScorer
from models.scorers.knn import KNNConfig, KNNScorer
from models.scorers.mf import MFConfig, MFScorer
from models.scorers.mlp import MLPConfig, MLPScorer
from models.scorers.prior import ConstantConfig, ConstantScorer, GroupPriorConfig, GroupPriorScorer

# kind -> (scorer class with fit(data, config), its config dataclass)
SCORERS: dict[str, tuple[Any, type]] = {
    "constant": (ConstantScorer, ConstantConfig),
    "group_prior": (GroupPriorScorer, GroupPriorConfig),
    "knn": (KNNScorer, KNNConfig),
    "mlp": (MLPScorer, MLPConfig),
    "mf": (MFScorer, MFConfig),
    "contrastive": (ContrastiveScorer, ContrastiveConfig),
}

__all__ = ["SCORERS", "Scorer", "TrainSet", "fit_scorer", "restore_scorer", "spec_name"]


def _kind(spec: dict[str, Any]) -> str:
    kind = spec.get("kind")
    if kind != "ensemble" and kind not in SCORERS:
        raise ValueError(f"Unknown scorer kind {kind!r}; choose one of {sorted(SCORERS)} or 'ensemble'.")
    return str(kind)


def fit_scorer(spec: dict[str, Any], data: TrainSet) -> Scorer:
    """Train the scorer that `spec` describes on `data`."""
    kind = _kind(spec)
    if kind == "ensemble":
        members = [fit_scorer(m, data) for m in spec["members"]]
        return EnsembleScorer(members, list(spec.get("weights") or [1.0] * len(members)))
    cls, config_cls = SCORERS[kind]
    config = config_cls(**{k: v for k, v in spec.items() if k != "kind"})
    scorer: Scorer = cls.fit(data, config)
    return scorer


def restore_scorer(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Scorer:
    """Rebuild a saved scorer from `{"kind": ..., **config_json()}` and its arrays."""
    kind = _kind(config)
    body = {k: v for k, v in config.items() if k != "kind"}
    cls = EnsembleScorer if kind == "ensemble" else SCORERS[kind][0]
    scorer: Scorer = cls.from_state(body, arrays)
    return scorer


def spec_name(spec: dict[str, Any]) -> str:
    """Short readable name of a spec, e.g. `knn(k=50,temperature=0.05)` or `ensemble[knn(...)+mlp(...)]`."""
    if spec.get("kind") == "ensemble":
        return "ensemble[" + "+".join(spec_name(m) for m in spec["members"]) + "]"
    args = ",".join(f"{k}={v}" for k, v in spec.items() if k != "kind")
    return f"{spec['kind']}({args})"
