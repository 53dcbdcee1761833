"""RouterDC-like contrastive quality scorer (Chen et al., NeurIPS 2024, "RouterDC: Query-Based Router by Dual
Contrastive Learning"), on top of the frozen MiniLM embedding instead of a fine-tuned encoder.

A small MLP maps the embedding to z(q) [dim]; each model has a learned key k_m [dim]; sim = cos(z, k_m) / tau.
  - sample-LLM loss: for each prompt, every one of its `top_k` best-scoring models is contrasted with its
    `last_k` worst: -log(e^sim+ / (e^sim+ + sum e^sim-)); prompts whose models all score alike are skipped;
  - sample-sample loss (weight `sample_loss`): prompts in one k-means cluster of the embeddings are pulled
    together and pushed from other clusters' prompts in the batch, which keeps z from collapsing.
Routing uses argmax sim; probabilities come from one logistic map per model on its similarity (Platt, fitted on
the training rows), so the output means P(good answer) like the other scorers'. This module knows nothing
about files or routing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.calibration import fit_platt, sigmoid
from models.scorers.base import Scorer, TrainSet


@dataclass(frozen=True)
class ContrastiveConfig:
    hidden: int = 256  # MLP hidden width
    dim: int = 64  # shared space of prompts and model keys
    temperature: float = 0.2  # tau on cosine similarity
    top_k: int = 3  # positives per prompt (RouterDC: top-K models by score)
    last_k: int = 3  # negatives per prompt (RouterDC: last-H models)
    n_clusters: int = 8  # k-means clusters for the sample-sample loss
    sample_loss: float = 1.0  # weight of the sample-sample loss (RouterDC: lambda = 1)
    epochs: int = 20
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    seed: int = 0


class ContrastiveNet(nn.Module):
    """q [B, D] -> similarities [B, M] (cosine / tau)."""

    def __init__(self, in_dim: int, n_models: int, config: ContrastiveConfig) -> None:
        super().__init__()
        self.tau = config.temperature
        self.proj = nn.Sequential(nn.Linear(in_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.dim))
        self.keys = nn.Parameter(torch.randn(n_models, config.dim))  # [M, dim]

    def embed(self, q: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(q), dim=1)  # [B, dim]

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.embed(q) @ F.normalize(self.keys, dim=1).T / self.tau


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 20) -> np.ndarray:
    """[N] cluster id per row of unit vectors x [N, D] (spherical k-means, seeded init)."""
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centres = x[rng.choice(len(x), size=k, replace=False)]
    assign = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        assign = (x @ centres.T).argmax(axis=1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c = members.sum(axis=0)
                centres[j] = c / max(float(np.linalg.norm(c)), 1e-9)
    return assign


def sample_llm_loss(sims: torch.Tensor, scores: torch.Tensor, top_k: int, last_k: int) -> torch.Tensor:
    """sims, scores [B, M] -> [B] loss (0 for prompts whose models all score alike)."""
    order = scores.argsort(dim=1, descending=True)
    pos = sims.gather(1, order[:, :top_k])  # [B, K+]
    neg = sims.gather(1, order[:, -last_k:])  # [B, K-]
    neg_lse = neg.logsumexp(dim=1, keepdim=True)  # [B, 1]
    per = -(pos - torch.logaddexp(pos, neg_lse)).sum(dim=1)
    informative = scores.max(dim=1).values > scores.min(dim=1).values
    return per * informative


def sample_sample_loss(z: torch.Tensor, cluster: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """z [B, dim] unit rows, cluster [B] -> mean InfoNCE of each row against one same-cluster row in the batch."""
    sims = z @ z.T / tau  # [B, B]
    same = cluster[:, None] == cluster[None, :]
    same.fill_diagonal_(False)
    has_pos = same.any(dim=1)
    if not bool(has_pos.any()):
        return sims.new_zeros(())
    # one random positive per anchor: argmax of noise over the same-cluster columns
    noise = torch.rand(sims.shape, generator=gen).masked_fill(~same, -1.0)
    pos = sims.gather(1, noise.argmax(dim=1, keepdim=True))  # [B, 1]
    neg = sims.masked_fill(same | torch.eye(len(z), dtype=torch.bool), float("-inf"))
    denom = torch.logaddexp(pos[:, 0], neg.logsumexp(dim=1))
    return (-(pos[:, 0] - denom))[has_pos].mean()


class ContrastiveScorer(Scorer):
    kind: ClassVar[str] = "contrastive"

    def __init__(self, config: ContrastiveConfig, net: ContrastiveNet, platt: np.ndarray) -> None:
        self.config, self.net = config, net
        self.platt = platt.astype(np.float32)  # [M, 2]: slope, intercept on the similarity

    @classmethod
    def fit(cls, data: TrainSet, config: ContrastiveConfig) -> ContrastiveScorer:
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        net = ContrastiveNet(data.emb.shape[1], data.n_models, config)
        x, y = torch.as_tensor(data.emb), torch.as_tensor(data.scores)
        cluster = torch.as_tensor(kmeans(data.emb, config.n_clusters, config.seed))
        w = torch.as_tensor(data.group_balanced_weights(1.0))
        steps = config.epochs * max(1, -(-len(x) // config.batch_size))
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        net.train()
        for _ in range(config.epochs):
            perm = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), config.batch_size):
                idx = perm[s : s + config.batch_size]
                z = net.embed(x[idx])
                sims = z @ F.normalize(net.keys, dim=1).T / config.temperature
                loss = (sample_llm_loss(sims, y[idx], config.top_k, config.last_k) * w[idx]).mean()
                loss = loss + config.sample_loss * sample_sample_loss(z, cluster[idx], config.temperature, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
        net.eval()
        with torch.inference_mode():
            s = net(x).numpy()
        platt = np.array([fit_platt(sigmoid(s[:, j]), data.scores[:, j]) for j in range(data.n_models)])
        return cls(config, net, platt)

    @torch.inference_mode()
    def similarities(self, emb: np.ndarray) -> np.ndarray:
        """[B, D] -> [B, M] cosine / tau."""
        self.net.eval()
        return np.asarray(self.net(torch.as_tensor(emb, dtype=torch.float32)).numpy(), dtype=np.float32)

    def predict(self, emb: np.ndarray) -> np.ndarray:
        s = self.similarities(emb)
        return np.asarray(sigmoid(self.platt[:, 0] * s + self.platt[:, 1]), dtype=np.float32)

    def config_json(self) -> dict[str, Any]:
        return {**asdict(self.config), "in_dim": self.net.proj[0].in_features, "n_models": len(self.net.keys)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"platt": self.platt, **{k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> ContrastiveScorer:
        cfg = ContrastiveConfig(**{k: v for k, v in config.items() if k not in ("in_dim", "n_models")})
        net = ContrastiveNet(int(config["in_dim"]), int(config["n_models"]), cfg)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items() if k != "platt"})
        return cls(cfg, net.eval(), arrays["platt"])
