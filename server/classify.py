"""Prompt classification as the request path sees it: text in, category scores + complexity out.

`Classifier` is the one interface `serving.py` awaits. `KeywordClassifier` is the dependency-free rule set
(microseconds, no model) used by the demo and tests; `MiniLMClassifier` adapts the GPU/CPU encoder in
`models/` through its async micro-batcher. Nothing here knows about engines or HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .config import CATEGORIES, ClassifierConfig, ConfigError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Classification:
    category: str
    category_scores: dict[str, float]
    complexity: float  # [0, 1]: predicted share of 7B-class models that would get this prompt wrong
    embedding: np.ndarray | None = field(default=None, repr=False)  # [384] float32, L2-normalised
    # set with `embedding` by the MiniLM classifier: the prompt lists answer options or ends in an "Answer:"
    # slot (models/answer_format.py); the learned quality predictor reads the two together
    offers_choices: bool = False


class Classifier(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def classify(self, text: str) -> Classification: ...


# Each rule adds its weight to a category when it matches; the prior keeps unmatched prompts on general_qa.
_RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = tuple(
    (category, weight, re.compile(pattern, re.IGNORECASE))
    for category, weight, pattern in (
        (
            "code",
            3.0,
            r"```|\bdef |\bclass \w+|\bfunction\b|\bpython\b|\bjavascript\b|\btypescript\b|\bsql\b"
            r"|\bcode\b|\bbug\b|\bcompile|\bregex\b|\bapi\b|\bjava\b|\brust\b|\bc\+\+|#include",
        ),
        ("code", 1.5, r"\bimplement\b|\bprogram\b|\bscript\b|\balgorithm\b|\bdebug|\bstack trace\b"),
        ("math", 3.0, r"\bsolve\b|\bequation\b|\bintegral\b|\bderivative\b|\bprobability\b|\d+\s*[-+*/^=]\s*\d+"),
        ("math", 1.5, r"\bhow many\b|\bhow much\b|\bcalculate\b|\bsum of\b|\bpercent|\btheorem\b"),
        ("reasoning", 2.0, r"\bstep by step\b|\blogic|\bpuzzle\b|\bdeduce\b|\bwhich of the following\b"),
        ("creative_writing", 3.0, r"\bpoem\b|\bstory\b|\bhaiku\b|\blyrics\b|\bessay\b|\bnovel\b|\bfiction\b"),
        ("summarization", 3.0, r"\bsummar|\btl;?dr\b|\bkey points\b|\bcondense\b"),
        ("extraction", 3.0, r"\bextract\b|\blist all\b|\bfind all\b|\bpull out\b|\bparse\b.*\bfrom\b"),
        ("translation_multilingual", 3.0, r"\btranslat|\bin (french|german|spanish|chinese|japanese)\b"),
        ("roleplay_chat", 3.0, r"\bpretend\b|\bact as\b|\broleplay\b|\byou are a\b|\bin character\b"),
        ("brainstorming", 3.0, r"\bbrainstorm\b|\bideas? for\b|\bsuggest(ions)?\b|\bcome up with\b"),
        ("classification", 3.0, r"\bclassify\b|\bcategori[sz]e\b|\bsentiment\b|\bis this .* or\b|\blabel\b"),
        ("general_qa", 1.0, r"^\s*(what|who|when|where|why|how)\b"),
    )
)
_NON_LATIN = re.compile(r"[\u0400-\u04ff\u0600-\u06ff\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")


class KeywordClassifier:
    """Regex rules: a transparent stand-in for the learned classifier, cheap enough for any request path."""

    def __init__(self, prior: float = 0.5) -> None:
        self.prior = prior

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def classify(self, text: str) -> Classification:
        return self.classify_now(text)

    def classify_now(self, text: str) -> Classification:
        head = text[:4000]  # rules need no more; bounds the cost of pathological prompts
        votes = dict.fromkeys(CATEGORIES, 0.0)
        votes["general_qa"] = self.prior
        for category, weight, pattern in _RULES:
            if pattern.search(head):
                votes[category] += weight
        if _NON_LATIN.search(head):
            votes["translation_multilingual"] += 2.5
        exp = {c: math.exp(v) for c, v in votes.items()}
        total = sum(exp.values())
        scores = {c: e / total for c, e in exp.items()}
        category = max(scores, key=scores.__getitem__)
        # Longer prompts are harder on average; saturates around 2k characters.
        complexity = min(1.0, 0.15 + len(text) / 2500)
        return Classification(category, scores, round(complexity, 4))


class MiniLMClassifier:
    """The learned classifier from `models/`, batched across concurrent requests."""

    def __init__(self, settings: ClassifierConfig) -> None:
        self.settings = settings
        self._batcher: Any = None

    async def start(self) -> None:
        # Heavy imports (torch) happen only when this classifier is configured.
        from models.batcher import BatcherConfig, MicroBatcher
        from models.classifier import PromptClassifier
        from models.encoder import EncoderConfig

        settings = self.settings
        impl = settings.impl
        if impl == "auto":
            import torch

            impl = "triton" if torch.cuda.is_available() else "eager"
        encoder = EncoderConfig(model=settings.encoder or "", device=settings.device, impl=impl)
        classifier = await asyncio.to_thread(PromptClassifier.load, settings.artifact, encoder)
        check_labels(classifier.labels, settings.artifact or "the shipped models/artifacts/classifier")
        warm_s = await asyncio.to_thread(classifier.warmup)
        log.info("MiniLM classifier warm (%s on %s) in %.0f ms", impl, settings.device, warm_s * 1e3)
        self._batcher = MicroBatcher(
            classifier, BatcherConfig(max_batch=settings.max_batch, max_wait_ms=settings.batch_window_ms)
        )
        await self._batcher.start()

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()

    async def classify(self, text: str) -> Classification:
        from models.answer_format import offers_choices

        result = await self._batcher.classify(text)
        return Classification(
            result.category, result.category_scores, float(result.complexity), result.embedding, offers_choices(text)
        )

    @property
    def ready(self) -> bool:
        return self._batcher is not None and bool(self._batcher.running)

    async def embed(self, text: str) -> np.ndarray:
        """The encoder's embedding of `text` ([384] float32, unit norm), batched with concurrent calls."""
        result = await self._batcher.classify(text)
        embedding: np.ndarray = result.embedding
        return embedding


def check_labels(labels: Sequence[str], artifact: str) -> None:
    """The classifier's categories must be the router's (`server.config.CATEGORIES`): profiles, statistics and
    the audit log are keyed by them. `ConfigError` names both lists."""
    if set(labels) != set(CATEGORIES) or len(labels) != len(CATEGORIES):
        raise ConfigError(
            f"classifier.artifact ({artifact}) predicts the categories {sorted(labels)}, but the router's "
            f"(server.config.CATEGORIES) are {sorted(CATEGORIES)}: retrain it (triage train-classifier) or point "
            "classifier.artifact at one trained on these categories"
        )


def build_classifier(settings: ClassifierConfig) -> Classifier:
    if settings.kind == "minilm":
        return MiniLMClassifier(settings)
    return KeywordClassifier()
