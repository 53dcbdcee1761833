"""Embed a list of texts once and cache the matrix on disk.

Cache files live under `.cache/triage/` in the repository root (git-ignored) as `<key>.npy`, where the key
hashes the data file's sha256 (or the texts themselves), the encoder id and its truncation settings. A second
run with the same inputs loads the matrix in milliseconds. This module knows nothing about labels or heads.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.data import REPO_ROOT
from models.encoder import EncoderConfig, SentenceEncoder

logger = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "triage"


def cache_key(config: EncoderConfig, data_id: str) -> str:
    """Stable key: data id (file sha256) + encoder id + everything that changes the vectors."""
    parts = {
        "data": data_id,
        "encoder": config.encoder_id,
        "model_path": config.model or "bundled",
        **config.truncation_meta(),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{config.encoder_id}-t{config.max_tokens}-{digest}"


def texts_id(texts: Sequence[str]) -> str:
    """Content hash of a list of texts, for data that did not come from one file."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def embed_cached(
    texts: Sequence[str],
    config: EncoderConfig,
    data_id: str | None = None,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    encoder: SentenceEncoder | None = None,
) -> np.ndarray:
    """Embeddings [N, dim] float32 for `texts`, computed once per (data, encoder, truncation) and cached.

    data_id: the source file's sha256 plus anything that selects rows; default hashes the texts.
    encoder: reuse a loaded encoder (otherwise one is built from `config` only on a cache miss).
    """
    key = cache_key(config, data_id or texts_id(texts))
    path = Path(cache_dir) / f"{key}.npy"
    if path.is_file():
        emb = np.asarray(np.load(path), dtype=np.float32)
        if emb.shape[0] == len(texts):
            logger.info("embeddings: cache hit %s %s", path, emb.shape)
            return emb
        logger.warning("embeddings: %s has %d rows, expected %d; recomputing", path, emb.shape[0], len(texts))
    enc = encoder or SentenceEncoder(config)
    logger.info("embeddings: computing %d texts with %s (%s) -> %s", len(texts), config.encoder_id, enc.impl, path)
    emb = enc.encode(list(texts), progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, emb)
    tmp.replace(path)
    return emb
