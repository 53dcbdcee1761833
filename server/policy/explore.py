"""What the policy learns from outcomes, and how it spends a small share of traffic to keep learning.

`OutcomeStats` keeps per (category, model) Beta counts on top of a prior centred on the profile's quality:
alpha = strength * q + successes, beta = strength * (1 - q) + failures. Client feedback adds its score as a
fractional success and (1 - score) as a failure; implicit signals (errors, timeouts) add failures only, with
a smaller weight, since a served answer says nothing about whether it was good.

`Explorer` decides, with probability `share`, to explore; it then draws each near-best candidate's quality
from its Beta posterior (Thompson sampling) and returns the candidate whose utility is highest with the drawn
quality. Knows nothing about load, latency or persistence (the policy writes counts to the store).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

PRIOR_STRENGTH = 20.0  # pseudo-observations behind the profile's quality number


class OutcomeStats:
    def __init__(self, prior_strength: float = PRIOR_STRENGTH) -> None:
        self.prior_strength = prior_strength
        self.counts: dict[tuple[str, str], list[float]] = {}  # (category, model) -> [successes, failures]

    def load(self, rows: Iterable[tuple[str, str, float, float]]) -> None:
        """Replace counts with (category, model, successes, failures) rows, e.g. from the store."""
        self.counts = {(c, m): [s, f] for c, m, s, f in rows}

    def add(self, category: str, model: str, successes: float, failures: float) -> tuple[float, float]:
        """Add evidence; returns the new (successes, failures) totals."""
        entry = self.counts.get((category, model))
        if entry is None:
            entry = self.counts[(category, model)] = [0.0, 0.0]
        entry[0] += successes
        entry[1] += failures
        return entry[0], entry[1]

    def beta(self, category: str, model: str, prior_quality: float) -> tuple[float, float]:
        """(alpha, beta) of the posterior; the prior alone when nothing was observed."""
        strength = self.prior_strength
        entry = self.counts.get((category, model))
        successes, failures = (entry[0], entry[1]) if entry is not None else (0.0, 0.0)
        q = min(max(prior_quality, 0.01), 0.99)  # keep both parameters positive
        return strength * q + successes, strength * (1.0 - q) + failures

    def shift(self, category: str, model: str, prior_quality: float) -> float:
        """Posterior mean minus the prior mean: how far outcomes have moved this model's quality."""
        entry = self.counts.get((category, model))
        if entry is None:
            return 0.0
        alpha, beta = self.beta(category, model, prior_quality)
        return alpha / (alpha + beta) - min(max(prior_quality, 0.01), 0.99)


class Explorer:
    """Thompson sampling over near-best candidates, on `share` of decisions."""

    def __init__(self, share: float, margin: float, seed: int | None = None) -> None:
        self.share = share
        self.margin = margin  # candidates within this utility of the best are "near-best"
        self.rng = random.Random(seed)

    def should_explore(self) -> bool:
        return self.share > 0.0 and self.rng.random() < self.share

    def pick(self, options: Sequence[tuple[int, float, float, float, float]]) -> int:
        """Index of the winner among (index, utility, quality weight * quality, alpha, beta) options.

        The drawn utility replaces the expected quality term by one drawn from Beta(alpha, beta).
        """
        best_index, best_value = options[0][0], float("-inf")
        for index, utility, quality_term, alpha, beta in options:
            weight = quality_term / (alpha / (alpha + beta)) if alpha > 0 else 0.0
            value = utility - quality_term + weight * self.rng.betavariate(alpha, beta)
            if value > best_value:
                best_index, best_value = index, value
        return best_index
