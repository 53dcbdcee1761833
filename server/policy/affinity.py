"""Conversation affinity: which engine served a conversation's earlier turns, so a follow-up can reuse the
prompt prefix that engine still holds in its prefix cache.

A request carries the hashes of its message prefixes (`RouteRequest.prefixes`: messages[:1], messages[:2], ...,
all of them; `inspect_request.message_prefixes`). When a request commits, and again when it finishes OK on the
model that really answered, its whole message list's hash is recorded against that model. The next turn of the
same conversation (those messages, then the answer, then a new user turn or a tool result) has that hash as one
of its prefixes, so `cached_tokens` finds how much of its prompt each engine has seen. The policy turns that into
prefill time saved (`latency.py`): a utility term, so the conversation moves when the task or the load say so.

A bounded map with a time-to-live (an engine's prefix cache evicts under pressure, so old entries promise
nothing); reads change nothing, so `choose()` stays pure. Knows nothing about messages, engines or HTTP.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

MAX_LOOKUPS = 64  # prefixes looked up per request, longest first: a long agent loop costs no more than this


class AffinityMap:
    """prefix hash -> (model, recorded at), the most recent `max_entries`, each for `ttl_s` seconds."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[int, tuple[str, float]] = OrderedDict()  # oldest record first

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, key: int, model: str, now_s: float) -> None:
        """`model` now holds the prefix hashed as `key`; drops what expired or no longer fits."""
        if self.ttl_s <= 0:
            return  # affinity off
        entries = self._entries
        entries[key] = (model, now_s)
        entries.move_to_end(key)
        while entries:
            _, recorded_s = next(iter(entries.values()))
            if len(entries) <= self.max_entries and now_s - recorded_s <= self.ttl_s:
                break
            entries.popitem(last=False)

    def cached_tokens(self, prefixes: Sequence[tuple[int, int]], now_s: float) -> dict[str, int]:
        """Per model: the tokens of the longest of `prefixes` ((hash, tokens), shortest first) it served within
        the time-to-live. Changes nothing."""
        entries = self._entries
        found: dict[str, int] = {}
        for key, tokens in reversed(prefixes[-MAX_LOOKUPS:]):
            hit = entries.get(key)
            if hit is not None and now_s - hit[1] <= self.ttl_s and hit[0] not in found:
                found[hit[0]] = tokens
        return found
