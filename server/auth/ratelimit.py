"""Token buckets: one per key for requests and tokens per minute (`tenancy.py`), and `Limiter`, a bounded table of
buckets by name (feedback calls per key or per client address).

Pure arithmetic on a clock the caller passes; knows nothing about HTTP or keys.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_NAMES = 10_000  # buckets a Limiter keeps; the least recently used goes first (open mode: one per address)


@dataclass(slots=True)
class TokenBucket:
    """`rate_per_min` units per minute, bursts up to one minute's worth."""

    rate_per_min: float
    level: float = -1.0  # < 0: full on first use
    at_s: float = 0.0

    def take(self, amount: float, now_s: float) -> float:
        """Take `amount`; 0.0 when granted, else the seconds until it would be."""
        if self.level < 0:
            self.level, self.at_s = self.rate_per_min, now_s
        self.level = min(self.rate_per_min, self.level + (now_s - self.at_s) * self.rate_per_min / 60.0)
        self.at_s = now_s
        if amount <= self.level or (amount > self.rate_per_min and self.level >= self.rate_per_min):
            self.level -= amount  # a request bigger than a minute's worth passes on a full bucket
            return 0.0
        return (amount - self.level) * 60.0 / self.rate_per_min


class Limiter:
    """`rate_per_min` per name, each name its own bucket; at most `MAX_NAMES` names remembered."""

    def __init__(self, rate_per_min: float) -> None:
        self.rate_per_min = rate_per_min
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, name: str, now_s: float) -> float:
        """Take one for `name`: 0.0 when granted, else the seconds until it would be."""
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(self.rate_per_min)
            if len(self._buckets) > MAX_NAMES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
        return bucket.take(1, now_s)
