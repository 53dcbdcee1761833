"""Task-category head: one linear model over the sentence embedding, surface features and hashed n-grams.

logits [B, C] = (dense [B, D] @ W [D, C] + b [C] + lexical rows [B, n_buckets] @ V [n_buckets, C]) / T

`dense` is the 384-d MiniLM embedding followed by the surface features (models/features.py) and, when
`static_chars` > 0, the static word-piece vectors of the prompt's start and end (models/static_vectors.py);
the lexical rows are the sparse hashed n-grams of models/lexical.py. T is a temperature fitted on out-of-fold
logits so that the softmax is calibrated. Training (`fit_task_head`) is full-batch Adam with L2 penalties in
torch, a few seconds on CPU; serving (`TaskHead.predict`) is plain numpy. Weights are saved with safetensors under
`task.dense.weight`, `task.dense.bias`, `task.lexical.weight`; the config goes in the caller's JSON metadata.
This module knows nothing about files of prompts, the encoder or category names.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.errors import ArtifactError
from models.lexical import LexicalConfig, SparseRows


@dataclass(frozen=True)
class TaskHeadConfig:
    dense_dim: int = 392  # embedding (384) + surface features (8) [+ 2 x 384 static vectors]
    n_classes: int = 11
    lexical: LexicalConfig = field(default_factory=LexicalConfig)
    temperature: float = 1.0  # logits are divided by this before the softmax
    # > 0: dense ends with the static word-piece vectors of the first and last `static_chars` characters
    # (models/static_vectors.py); 0: no static vectors (artifacts before issue 13 have no such key)
    static_chars: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kind": "linear+lexical"}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskHeadConfig:
        try:
            body = {k: v for k, v in d.items() if k != "kind"}
            return cls(**{**body, "lexical": LexicalConfig.from_json(body["lexical"])})
        except (TypeError, KeyError) as e:
            raise ArtifactError(f"Task head config {d} does not match TaskHeadConfig ({e}); retrain.") from e


@dataclass(frozen=True)
class TaskFitConfig:
    steps: int = 300  # full-batch Adam steps
    lr: float = 0.05  # peak learning rate, cosine-decayed to 0
    l2_dense: float = 1e-4  # L2 penalty (sum of squares) on W
    l2_lexical: float = 1e-4  # L2 penalty on V
    label_smoothing: float = 0.0  # cross-entropy label smoothing (softer targets against noisy rule labels)
    # each step, this share of rows is trained on the dense features alone (their n-gram logits are dropped,
    # the kept ones scaled by 1 / (1 - p)): the head cannot lean on a source's template words only
    lexical_row_dropout: float = 0.0
    seed: int = 0


@dataclass
class TaskHead:
    config: TaskHeadConfig
    weight: np.ndarray  # [D, C] float32
    bias: np.ndarray  # [C] float32
    lexical: np.ndarray  # [n_buckets, C] float32

    def logits(self, dense: np.ndarray, rows: SparseRows) -> np.ndarray:
        """[B, C] raw logits (before temperature)."""
        return np.asarray(dense @ self.weight + self.bias + rows.matmul(self.lexical), dtype=np.float32)

    def predict(self, dense: np.ndarray, rows: SparseRows) -> np.ndarray:
        """[B, C] calibrated probabilities; rows sum to 1."""
        return softmax(self.logits(dense, rows) / self.config.temperature)

    def save_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "task.dense.weight": torch.from_numpy(np.ascontiguousarray(self.weight)),
            "task.dense.bias": torch.from_numpy(np.ascontiguousarray(self.bias)),
            "task.lexical.weight": torch.from_numpy(np.ascontiguousarray(self.lexical)),
        }

    @classmethod
    def from_tensors(cls, config: TaskHeadConfig, tensors: dict[str, torch.Tensor], path: str | Path) -> TaskHead:
        try:
            w, b, v = (tensors[f"task.{k}"].float().numpy() for k in ("dense.weight", "dense.bias", "lexical.weight"))
        except KeyError as e:
            raise ArtifactError(f"{path} lacks task head tensor {e}; retrain with `triage train-classifier`.") from e
        want = ((config.dense_dim, config.n_classes), (config.n_classes,), (config.lexical.n_buckets, config.n_classes))
        if (w.shape, b.shape, v.shape) != want:
            raise ArtifactError(
                f"{path}: task head shapes {w.shape, b.shape, v.shape} do not fit its config {want}; retrain."
            )
        return cls(config, w, b, v)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


def _csr(rows: SparseRows, n_buckets: int) -> torch.Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": we use only s @ dense
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(
            torch.as_tensor(rows.offsets),
            torch.as_tensor(rows.ids),
            torch.as_tensor(rows.weights),
            size=(len(rows), n_buckets),
            check_invariants=False,
        )


class _SparseMatmul(torch.autograd.Function):
    """S @ V with a precomputed S^T for the backward (torch's CSR autograd is ~5x slower)."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, s: torch.Tensor, s_t: torch.Tensor) -> torch.Tensor:
        ctx.s_t = s_t
        return s @ v

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.s_t @ grad, None, None


def fit_task_head(
    config: TaskHeadConfig,
    dense: np.ndarray,
    rows: SparseRows,
    y: np.ndarray,
    sample_weight: np.ndarray,
    fit: TaskFitConfig,
) -> TaskHead:
    """dense [N, D] float32, rows: N sparse lexical rows, y [N] class ids, sample_weight [N] (normalised)."""
    if not len(dense) == len(rows) == len(y) == len(sample_weight):
        raise ValueError(
            f"dense, rows, y, sample_weight have {len(dense)}, {len(rows)}, {len(y)}, "
            f"{len(sample_weight)} rows; they must align."
        )
    torch.manual_seed(fit.seed)
    nb, c = config.lexical.n_buckets, config.n_classes
    w = torch.zeros(config.dense_dim, c, requires_grad=True)
    b = torch.zeros(c, requires_grad=True)
    v = torch.zeros(nb, c, requires_grad=True)
    opt = torch.optim.Adam([w, b, v], lr=fit.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=fit.steps)
    xt, yt = torch.as_tensor(dense, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    wt = torch.as_tensor(sample_weight / sample_weight.mean(), dtype=torch.float32)
    s = _csr(rows, nb)
    s_t = s.to_sparse_coo().t().coalesce().to_sparse_csr()  # type: ignore[no-untyped-call]
    gen = torch.Generator().manual_seed(fit.seed)
    for _ in range(fit.steps):
        lexical = _SparseMatmul.apply(v, s, s_t)  # type: ignore[no-untyped-call]
        if fit.lexical_row_dropout > 0:
            keep = torch.rand(len(yt), 1, generator=gen) >= fit.lexical_row_dropout  # [N, 1]
            lexical = lexical * keep / (1.0 - fit.lexical_row_dropout)
        logits = xt @ w + b + lexical
        per_row = F.cross_entropy(logits, yt, reduction="none", label_smoothing=fit.label_smoothing)
        loss = (per_row * wt).mean()
        loss = loss + fit.l2_dense * (w**2).sum() + fit.l2_lexical * (v**2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
    return TaskHead(config, w.detach().numpy(), b.detach().numpy(), v.detach().numpy())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Scalar T minimising the NLL of softmax(logits / T) (golden-section search on log T in [-3, 3])."""

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]).mean())

    lo, hi, g = -3.0, 3.0, (np.sqrt(5.0) - 1) / 2
    for _ in range(60):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    return round(float(np.exp((lo + hi) / 2)), 4)
