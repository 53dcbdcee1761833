"""The learned quality predictor as the policy sees it: per configured model, the predicted probability that it
answers this prompt well, from the prompt's embedding and answer format (`models/quality.py`, trained by
`triage train-quality` on an outcomes file). Models the predictor does not know keep their profile quality
(`None` here).
Where the predictor's abstention gate closes (a prompt unlike its training prompts, models/gate.py), the
probabilities are each model's overall success rate: the policy then prefers the best single model overall,
and latency and cost still weigh against honest numbers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ..config import ConfigError, ModelConfig

if TYPE_CHECKING:
    from models.quality import QualityPredictor

log = logging.getLogger(__name__)


class LearnedQuality:
    def __init__(self, predictor: QualityPredictor, columns: list[int | None]) -> None:
        self.predictor = predictor
        self.columns = columns  # configured model i -> predictor output column, or None
        self._unknown: list[float | None] = [None] * len(columns)

    @classmethod
    def load(cls, artifact: str, models: list[ModelConfig]) -> LearnedQuality:
        from models.quality import QualityPredictor  # torch-backed: imported only when configured

        predictor = QualityPredictor.load(None if artifact == "default" else artifact)
        known = {name: k for k, name in enumerate(predictor.models)}
        columns: list[int | None] = []
        for m in models:
            name = m.profile.predictor_model
            if name is not None and name not in known:
                raise ConfigError(
                    f"models[{m.name}].profile.predictor_model: '{name}' is not one of the "
                    f"predictor's models: {', '.join(predictor.models)}"
                )
            columns.append(known.get(name) if name is not None else None)
        if not any(c is not None for c in columns):
            raise ConfigError(
                "policy.quality_predictor is set but no model has profile.predictor_model; "
                "map at least one model to one of: " + ", ".join(predictor.models)
            )
        log.info("learned quality predictor: %d of %d models mapped", sum(c is not None for c in columns), len(columns))
        return cls(predictor, columns)

    def predict(self, embedding: np.ndarray | None, offers_choices: bool = False) -> list[float | None]:
        """Per configured model: P(good answer) for this prompt, or None (unmapped model, or no embedding).
        offers_choices: the prompt's answer format (models/answer_format.py), which the predictor may weigh."""
        if embedding is None:
            return self._unknown
        probs = self.predictor.predict(embedding.reshape(1, -1), np.array([offers_choices]))[0]
        return [float(probs[c]) if c is not None else None for c in self.columns]
