"""How much of a useful-goodput ratio is noise: the correctness draws, and which prompts were held out.

routing_value draws each answer's correctness from the outcomes file's score for the model it went to, so two
policies that route the same prompts to different models differ by Bernoulli noise even when their expected
correct answers are equal. For one rate and placement, `Record` keeps per request (the same trace for every
policy, so requests pair by index) the prompt, the score of the model it went to and whether it counted within
the SLO. From two records `compare()` gives:

- the ratio of *expected* useful goodput (sum over SLO-met requests of the chosen model's score; the same
  quantity without the draws: its mean is the drawn ratio's),
- the drawn ratio's standard deviation from the draws alone (delta method; draws are independent per request
  and model, and shared where both policies chose the same model, as in `outcomes_workload.make_trace`),
- a 95% interval of the expected ratio over held-out prompt sets (bootstrap over prompts, requests of one prompt
  resampled together).

Knows nothing about policies, engines or time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Record:
    """One policy's run: per request of the trace, in trace order."""

    prompt: np.ndarray  # [N] int: row of the outcome table
    model: np.ndarray  # [N] int: column of the model it went to, -1 when rejected
    score: np.ndarray  # [N] float: that model's score for the prompt (P(correct)); 0 when rejected
    good: np.ndarray  # [N] bool: first token within the SLO and complete before the cut

    @property
    def expected_correct(self) -> np.ndarray:
        """[N] expected correct answers delivered within the SLO, per request."""
        return np.where(self.good, self.score, 0.0)


def compare(a: Record, b: Record) -> dict[str, Any]:
    """Noise of useful goodput a / b (the same trace): expected ratio, draw sd, prompt-bootstrap interval."""
    ea, eb = a.expected_correct, b.expected_correct  # [N]
    ta, tb = float(ea.sum()), float(eb.sum())
    if tb <= 0:
        return {"expected_ratio": None, "draw_sd": None, "prompt_bootstrap_95": None}
    rho = ta / tb
    var_a = float((ea * (1 - a.score)).sum())  # good * p (1 - p)
    var_b = float((eb * (1 - b.score)).sum())
    shared = (a.model == b.model) & (a.model >= 0) & a.good & b.good  # one draw decides both
    cov = float((a.score * (1 - a.score))[shared].sum())
    draw_sd = np.sqrt(max(0.0, var_a - 2 * rho * cov + rho**2 * var_b)) / tb
    n_prompts = int(max(a.prompt.max(), b.prompt.max())) + 1
    per_a = np.bincount(a.prompt, weights=ea, minlength=n_prompts)  # [P] summed over a prompt's requests
    per_b = np.bincount(b.prompt, weights=eb, minlength=n_prompts)
    seen = np.flatnonzero(np.bincount(a.prompt, minlength=n_prompts))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, len(seen), size=(BOOTSTRAP_RESAMPLES, len(seen)))  # [R, prompts]
    ratios = per_a[seen][picks].sum(axis=1) / np.maximum(per_b[seen][picks].sum(axis=1), 1e-12)  # [R]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {
        "expected_ratio": round(rho, 4),
        "draw_sd": round(float(draw_sd), 4),
        "prompt_bootstrap_95": [round(float(low), 4), round(float(high), 4)],
    }
