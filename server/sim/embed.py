"""`POST /v1/embeddings` of a simulated embedding engine (`task: embed`), shaped like vLLM's.

Each input (a string, or a list of token ids) gets a deterministic unit vector drawn from a hash of the input,
so equal inputs embed equally across runs and engines; nothing about it means anything. `encoding_format`
`float` or `base64` (little-endian float32, what the openai SDK asks for by default). Knows nothing about the
engine's timing (the app submits one prefill-only sequence per input) or about sockets.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from server.sim.protocol import ApiError, load_body
from server.sim.text import PromptError, completion_prompt_tokens

MAX_INPUTS = 2048  # OpenAI's limit per request


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    inputs: list[str | list[int]]
    tokens: list[int]  # prompt tokens of each input
    base64: bool  # encoding_format "base64", else floats


def parse_embed_request(raw: bytes, served_name: str, dim: int) -> EmbedRequest:
    """Validate an embeddings body; raises ApiError with vLLM's status codes."""
    body = load_body(raw, served_name)
    value = body.get("input")
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(t, int) for t in value)):
        value = [value]  # one text, or one list of token ids
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        raise ApiError(400, f"'input' must be a string or a list of 1..{MAX_INPUTS} strings or token-id lists", "input")
    try:
        tokens = [completion_prompt_tokens(item) for item in value]
    except PromptError as exc:
        raise ApiError(400, f"'input' holds an item that is neither text nor token ids: {exc}", param="input") from exc
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ApiError(400, f"encoding_format must be 'float' or 'base64', got {fmt!r}", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and dims != dim:
        raise ApiError(400, f"this model embeds into {dim} dimensions and cannot change that", param="dimensions")
    return EmbedRequest(value, tokens, fmt == "base64")


def vector(item: str | list[int], dim: int) -> list[float]:
    """A unit vector of `dim` floats determined by `item` alone."""
    digest = hashlib.blake2b(orjson.dumps(item), digest_size=16).digest()
    rng = random.Random(int.from_bytes(digest, "little"))
    values = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings_body(request: EmbedRequest, model: str, dim: int, created: int) -> bytes:
    data: list[dict[str, Any]] = []
    for index, item in enumerate(request.inputs):
        values = vector(item, dim)
        encoded: Any = values
        if request.base64:
            encoded = base64.b64encode(struct.pack(f"<{dim}f", *values)).decode()
        data.append({"index": index, "object": "embedding", "embedding": encoded})
    prompt_tokens = sum(request.tokens)
    return orjson.dumps(
        {
            "id": f"embd-sim-{created:x}",
            "object": "list",
            "created": created,
            "model": model,
            "data": data,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens, "completion_tokens": 0},
        }
    )
