"""The minilm kind: the router's own classifier encoder offered as an embedding model, answered in-process.

all-MiniLM-L6-v2 (384 dimensions, L2-normalised mean pooling, `models/encoder.py`): a prompt longer than the
encoder's 256-token budget is cut head + tail (the first three quarters and the last quarter of the budget are
kept), so any length is accepted. Inputs go through the classifier's micro-batcher, so embedding requests and
routing decisions share its batches and its one copy of the weights. It needs `classifier.kind: minilm` (checked
at start-up) and serves `POST /v1/embeddings` only; token-id inputs and other `dimensions` are refused. Usage
counts are estimates (characters / 4, at most 256 per input). Nothing here chooses models or reads HTTP.
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING

import aiohttp
import numpy as np
import orjson
from pydantic import ValidationError

from ..config import ModelConfig
from ..errors import EngineError, EngineUnavailable
from ..protocol import Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from .base import EngineClient, UpstreamStream
from .kind import EngineKind

if TYPE_CHECKING:
    from ..classify import Classifier, MiniLMClassifier

DIMENSIONS = 384
MAX_TOKENS = 256  # the encoder's token budget per input
CHARS_PER_TOKEN = 4


class MiniLMClient(EngineClient):
    def __init__(self, model: ModelConfig, endpoints: list[str], session: aiohttp.ClientSession) -> None:
        # No endpoint and no HTTP: the answer is computed here, once `use_classifier` has run.
        self.model = model
        self.endpoints = []
        self.session = session
        self.encoder: MiniLMClassifier | None = None

    def use_classifier(self, classifier: Classifier) -> None:
        from ..classify import MiniLMClassifier  # the type; `classify` imports nothing heavy at import

        self.encoder = classifier if isinstance(classifier, MiniLMClassifier) else None

    async def health(self) -> bool:
        return self.encoder is not None and self.encoder.ready

    async def complete(self, path: str, body: bytes) -> bytes:
        if path != "/embeddings":
            raise self._refuse("an embedding model; send it POST /v1/embeddings")
        encoder = self.encoder
        if encoder is None or not encoder.ready:
            raise EngineUnavailable(f"{self.model.name}: the MiniLM classifier is not running (see the start-up log)")
        try:
            request = EmbeddingRequest.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise self._refuse(f"invalid embeddings request: {exc}") from None
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not all(isinstance(t, str) for t in texts):
            raise self._refuse("reads text only; send strings, not token ids", "input")
        if request.dimensions not in (None, DIMENSIONS):
            raise self._refuse(f"embeds into {DIMENSIONS} dimensions only", "dimensions")
        vectors = await asyncio.gather(*(encoder.embed(str(t)) for t in texts))
        as_base64 = request.encoding_format == "base64"
        data = [
            Embedding(index=i, embedding=_base64(vector) if as_base64 else vector.astype(float).tolist())
            for i, vector in enumerate(vectors)
        ]
        tokens = sum(min(MAX_TOKENS, len(str(t)) // CHARS_PER_TOKEN + 1) for t in texts)
        usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        return EmbeddingResponse(data=data, model=self.model.upstream_name, usage=usage).model_dump_json().encode()

    async def open_stream(self, path: str, body: bytes) -> tuple[UpstreamStream, bytes]:
        raise self._refuse("an embedding model: it does not stream")

    def _refuse(self, message: str, param: str | None = None) -> EngineError:
        return EngineError(f"{self.model.name}: {message}", status=400, param=param, etype="invalid_request_error")


def _base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes in base64, as OpenAI's `encoding_format: base64`."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


KIND = EngineKind(name="minilm", client=MiniLMClient, in_process=True)
