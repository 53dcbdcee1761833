"""Abstention gate: when the quality scorer does not know a prompt, answer with the prior instead of a guess.

    c(x)    = confidence in [0, 1] from one signal s(x) and the fitted threshold t
              hard: c = 1 if s >= t else 0;   soft: c = clip(s / t, 0, 1)   (t <= 0: c = 1, the gate is open)
    p'(x)   = c * p(x) + (1 - c) * prior       p: calibrated per-model probabilities [B, M]

`prior` [M] is each model's benchmark-macro success rate on the training rows, so a prompt the gate closes on
is routed like the best single model overall, with honest probabilities the policy can still weigh against
latency and cost (a near-tie in quality lets a faster or cheaper model win). The soft mode shrinks every
probability toward the prior by the confidence, a smooth version of the same rule.

Signals (`GATE_SIGNALS`), all read off the scorer's one similarity product (or its output):
  - `max_sim`: cosine similarity to the nearest training prompt;
  - `mean_sim`: mean cosine to the k nearest (a kNN density estimate);
  - `purity`: share of the k nearest that come from their most common training benchmark (the neighbours of
    an unfamiliar kind of prompt scatter over several benchmarks);
  - `margin`: the scorer's raw probability for its argmax model minus that for the prior's best model.
This module knows nothing about fitting the threshold (models/gate_fit.py), files or routing rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

# signal -> what it measures (a low value = the scorer knows little about this prompt)
GATE_SIGNALS: dict[str, str] = {
    "max_sim": "cosine similarity to the nearest training prompt",
    "mean_sim": "mean cosine similarity to the k nearest training prompts",
    "purity": "share of the k nearest from their most common training benchmark",
    "margin": "raw probability of the argmax model minus that of the prior's best model",
}
Mode = Literal["hard", "soft"]


@dataclass(frozen=True)
class GateConfig:
    signal: str = "none"  # a key of GATE_SIGNALS, or "none": always confident (no gate)
    mode: Mode = "hard"
    threshold: float = 0.0  # in the signal's units; fitted by models/gate_fit.py

    def __post_init__(self) -> None:
        if self.signal != "none" and self.signal not in GATE_SIGNALS:
            raise ValueError(f"Unknown gate signal {self.signal!r}; choose 'none' or one of {sorted(GATE_SIGNALS)}.")
        if self.mode not in ("hard", "soft"):
            raise ValueError(f"Unknown gate mode {self.mode!r}; choose 'hard' or 'soft'.")

    @property
    def is_open(self) -> bool:
        """True when the gate never falls back (no signal, or a threshold no signal value can be below)."""
        return self.signal == "none" or self.threshold <= 0.0

    def signal_values(self, raw: np.ndarray, signals: dict[str, np.ndarray], prior: np.ndarray) -> np.ndarray:
        """[B] value of this gate's signal. raw [B, M] scorer output; signals: name -> [B]; prior [M] or [B, M]."""
        if self.signal == "margin":
            best = np.broadcast_to(prior, raw.shape).argmax(axis=1)  # [B] the prior's best model
            rows = np.arange(len(raw))
            return np.asarray(raw.max(axis=1) - raw[rows, best], dtype=np.float32)
        if self.signal not in signals:
            raise ValueError(
                f"the gate needs signal {self.signal!r}, but the scorer gives {sorted(signals) or 'none'}; "
                "gate a kNN scorer (or an ensemble with one) or retrain with `triage train-quality`."
            )
        return np.asarray(signals[self.signal], dtype=np.float32)

    def confidence(self, raw: np.ndarray, signals: dict[str, np.ndarray], prior: np.ndarray) -> np.ndarray:
        """[B] confidence c in [0, 1] (1 = trust the scorer, 0 = answer with the prior)."""
        if self.is_open:
            return np.ones(len(raw), dtype=np.float32)
        s = self.signal_values(raw, signals, prior)
        if self.mode == "hard":
            return (s >= self.threshold).astype(np.float32)
        return np.asarray(np.clip(s / self.threshold, 0.0, 1.0), dtype=np.float32)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "threshold": round(float(self.threshold), 6)}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> GateConfig:
        """A saved gate; None (artifacts from before the gate) = no gate."""
        return cls() if d is None else cls(str(d["signal"]), d.get("mode", "hard"), float(d["threshold"]))


def blend(probs: np.ndarray, confidence: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """probs [B, M], confidence [B], prior [M] or [B, M] -> c * probs + (1 - c) * prior, [B, M] float32."""
    c = confidence[:, None]
    return np.asarray(c * probs + (1.0 - c) * np.broadcast_to(prior, probs.shape), dtype=np.float32)
