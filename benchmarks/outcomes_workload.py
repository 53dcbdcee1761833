"""The routing_value workload: prompts of an outcomes file, their split, what the router sees of them, how long
their answers are, and whether each model answers them correctly.

An outcomes file has rows of (prompt_id, prompt, model, score, benchmark): `score` is the probability that the
model answers that prompt correctly (0/1, or the probability of the gold option). Prompts are split with the
quality predictor's own held-out rule (`models/splits.heldout_mask`, seed and share from the predictor's
meta.json), so the policies are graded only on prompts the predictor never trained on; the baselines that
learn (best single model, static per-category routing) learn on the training part. The router sees each prompt
as the gateway would: the MiniLM classifier's category scores, complexity and embedding (computed once and
cached; complexity from a head refit on the training part, see `complexity_from_training_part`), and a token
estimate from its characters. Correctness is drawn per request from the file's score for
the model it went to (the same draws for every policy at a rate: common random numbers) and never shown to a
policy except the oracle.

Knows nothing about engines, time or policies.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from server.classify import Classification
from server.policy import RouteRequest

if TYPE_CHECKING:
    from models.data import OutcomeTable
    from models.quality import QualityPredictor

CHARS_PER_TOKEN = 4  # the gateway's estimate (server/inspect_request.py): characters per prompt token
CHAT_OVERHEAD_TOKENS = 4  # role and separators of the one chat message


@dataclass(frozen=True)
class LengthModel:
    """Answer length of one kind of prompt: lognormal around `median_tokens`, cut at the client's max_tokens."""

    median_tokens: float
    sigma: float  # of ln(tokens)
    max_tokens: int  # what the client asks for; the policy plans with it
    why: str

    def draw(self, rng: random.Random) -> int:
        return max(1, min(self.max_tokens, round(self.median_tokens * math.exp(rng.gauss(0.0, self.sigma)))))


# Output lengths per benchmark family, matched by substring of the outcomes file's `benchmark` (first match).
# The file records correctness, not answer lengths, so these are written down here, with the reasoning:
OUTPUT_LENGTHS: tuple[tuple[str, LengthModel], ...] = (
    (
        "gsm8k",
        LengthModel(
            170,
            0.45,
            512,
            "grade-school maths answered with chain-of-thought: GSM8K reference solutions take 2-8 steps, "
            "7B chat models write them out in ~100-300 tokens before the final number",
        ),
    ),
    (
        "humaneval",
        LengthModel(
            190,
            0.5,
            512,
            "a Python function body completed from its docstring, often followed by a short explanation",
        ),
    ),
    (
        "mbpp",
        LengthModel(150, 0.5, 512, "a short Python function and a sentence about it"),
    ),
    (
        "math",
        LengthModel(260, 0.5, 1024, "competition maths: longer derivations than GSM8K"),
    ),
    (
        "mmlu",  # mmlu and cmmlu
        LengthModel(
            45,
            0.6,
            256,
            "multiple choice (a question ending in 'Answer:'): the chosen letter and a one-to-three sentence "
            "justification, as chat models answer when not forced to a single token",
        ),
    ),
    (
        "arc",
        LengthModel(40, 0.6, 256, "multiple-choice science questions: as MMLU"),
    ),
)
DEFAULT_LENGTH = LengthModel(
    128, 0.6, 512, "a benchmark without its own entry: a typical chat answer (the simulator's default length)"
)


def length_model(benchmark: str) -> LengthModel:
    name = benchmark.lower()
    return next((model for key, model in OUTPUT_LENGTHS if key in name), DEFAULT_LENGTH)


@dataclass
class Workload:
    """Everything per prompt (row p of the outcome table), in table order."""

    table: OutcomeTable
    heldout: np.ndarray  # [P] bool: the predictor never trained on these
    classifications: list[Classification]  # [P] what the router sees
    prompt_tokens: list[int]  # [P] the gateway's estimate

    @property
    def models(self) -> list[str]:
        return list(self.table.models)

    def train_rows(self) -> np.ndarray:
        return np.flatnonzero(~self.heldout)

    def test_rows(self) -> np.ndarray:
        return np.flatnonzero(self.heldout)


def prompt_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + CHAT_OVERHEAD_TOKENS


class _Precomputed:
    """Stands in for the classifier's encoder: the embeddings are computed (and cached) beforehand, and
    `PromptClassifier` only checks their width. Saves loading a second copy of the encoder."""

    dim = 384


def complexity_from_training_part(embedding: np.ndarray, scores: np.ndarray, train: np.ndarray) -> np.ndarray:
    """[P] complexity from a head refit on the training part only, with `triage train-classifier`'s recipe.

    The shipped classifier's complexity head is refit on every prompt of the RouterDC outcomes (its target, the
    share of models that fail a prompt, is the ground truth graded here), held-out ones included. A router in
    production has not seen the outcomes of the prompts it routes, so the benchmark does not let it either.
    """
    from models.train_classifier import build_parser, train_complexity_head

    recipe = build_parser().parse_args([])  # the script's defaults: epochs, learning rate, seed
    target = (1.0 - scores.mean(axis=1)).astype(np.float32)  # [P] share of models that fail
    head = train_complexity_head(embedding[train], target[train], recipe)
    return np.asarray(head.predict(embedding)[:, 0])


def classify(texts: Sequence[str], embedding: np.ndarray, complexity: np.ndarray) -> list[Classification]:
    """The MiniLM classifier's output per prompt from precomputed embeddings [P, 384] (its task head only), with
    `complexity` [P] in place of its complexity head's."""
    from models.answer_format import offers_choices
    from models.classifier import DEFAULT_ARTIFACT, PromptClassifier, load_task_head, read_meta
    from models.heads import HeadConfig, load_heads
    from models.task_head import TaskHeadConfig

    meta = read_meta(DEFAULT_ARTIFACT)  # what PromptClassifier.load reads, less the encoder
    weights = DEFAULT_ARTIFACT / "heads.safetensors"
    heads = load_heads(weights, {"complexity": HeadConfig.from_json(meta["heads"]["complexity"])})
    task = load_task_head(weights, TaskHeadConfig.from_json(meta["heads"]["task"]))
    classifier = PromptClassifier(_Precomputed(), task, heads["complexity"], list(meta["categories"]), meta)  # type: ignore[arg-type]
    out: list[Classification] = []
    for start in range(0, len(texts), 512):
        batch = list(texts[start : start + 512])
        result = classifier.classify_embeddings(batch, embedding[start : start + len(batch)])
        for k in range(len(batch)):
            scores = {c: float(p) for c, p in zip(result.labels, result.probs[k], strict=True)}
            category = max(scores, key=scores.__getitem__)
            choices = offers_choices(batch[k])
            out.append(Classification(category, scores, float(complexity[start + k]), result.embedding[k], choices))
    return out


def best_single(work: Workload) -> str:
    """The model with the highest mean score on the training part."""
    scores = work.table.scores[work.train_rows()]
    return work.models[int(scores.mean(axis=0).argmax())]


def best_per_category(work: Workload) -> dict[str, str]:
    """Classifier category -> the model with the highest mean training score on prompts of that category."""
    rows = work.train_rows()
    fallback = best_single(work)
    by_category: dict[str, list[int]] = {}
    for p in rows:
        by_category.setdefault(work.classifications[p].category, []).append(int(p))
    return {
        c: work.models[int(work.table.scores[ps].mean(axis=0).argmax())] if ps else fallback
        for c, ps in by_category.items()
    }


@dataclass(frozen=True)
class Request:
    """One arrival of the trace: which prompt, when, how long its answer is, and who answers it correctly."""

    rid: int
    prompt: int  # row of the outcome table
    arrival_s: float
    output_tokens: int
    correct: frozenset[str]  # models whose answer to this request is correct (drawn from the scores)


def make_trace(work: Workload, rate: float, duration_s: float, seed: int) -> list[Request]:
    """Open-loop Poisson arrivals at `rate` req/s; held-out prompts in a seeded shuffled cycle.

    The trace lasts `duration_s`, or longer at low rates: long enough that every held-out prompt arrives once,
    so that accuracy at light load is measured on the whole held-out set.
    """
    rng = random.Random(seed)
    test = [int(p) for p in work.test_rows()]
    n = max(len(test), math.ceil(rate * duration_s))
    order: list[int] = []
    while len(order) < n:
        cycle = test[:]
        rng.shuffle(cycle)
        order += cycle
    scores = work.table.scores
    models = work.models
    t = 0.0
    out: list[Request] = []
    for rid, p in enumerate(order[:n]):
        t += rng.expovariate(rate)
        lengths = length_model(work.table.benchmarks[p])
        right = frozenset(m for m, s in zip(models, scores[p], strict=True) if rng.random() < s)
        out.append(Request(rid, p, t, lengths.draw(rng), right))
    return out


def route_request(work: Workload, request: Request) -> RouteRequest:
    p = request.prompt
    max_tokens = length_model(work.table.benchmarks[p]).max_tokens
    return RouteRequest(str(request.rid), work.classifications[p], work.prompt_tokens[p], max_tokens)


def predicted_quality(predictor: QualityPredictor, work: Workload) -> np.ndarray:
    """[P, M] the predictor's probabilities for every prompt, in the predictor's model order (one batched call)."""
    embedding = np.stack([c.embedding for c in work.classifications if c.embedding is not None])
    choices = np.array([c.offers_choices for c in work.classifications if c.embedding is not None])
    return np.asarray(predictor.predict(embedding, choices))
