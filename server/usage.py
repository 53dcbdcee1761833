"""The token usage an engine reports in an OpenAI answer: `usage` in a whole JSON answer, or in the event a stream
ends with when `stream_options.include_usage` is set (`{"choices": [], "usage": {...}}` before `[DONE]`).

Budgets are settled with these numbers when they are present (the router's own counts are estimates from
characters). `StreamUsage` reads them as the events pass and drops the usage event when only the router asked
for it. Pure functions over bytes; knows nothing about keys, budgets or HTTP.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_MARKERS = (b'"usage":{', b'"usage": {')  # a usage object, not `"usage": null`
_EVENT = re.compile(rb".*?(?:\r\n\r\n|\n\n|\r\r|\n\r\n|\r\n\n)", re.S)  # one event and its end (see backends/base.py)


def total_tokens(usage: Any) -> int | None:
    """Prompt plus completion tokens of an OpenAI `usage` object, or None when it says nothing usable."""
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    if all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in parts):
        return int(parts[0]) + int(parts[1])  # type: ignore[arg-type]
    return None


def body_usage(body: bytes) -> int | None:
    """Total tokens a whole (non-streamed) JSON answer reports, or None."""
    if not any(marker in body for marker in _MARKERS):
        return None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return total_tokens(answer.get("usage")) if isinstance(answer, dict) else None


class StreamUsage:
    """Follows a streamed answer's events: the last usage it reports (`total`), and, unless `keep_usage_event`,
    the events that carry only usage (`choices` empty) taken out."""

    def __init__(self, keep_usage_event: bool) -> None:
        self.keep_usage_event = keep_usage_event
        self.total: int | None = None

    def feed(self, events: bytes) -> bytes:
        """`events` (whole SSE events), less any usage-only event the client did not ask for."""
        if not any(marker in events for marker in _MARKERS):
            return events  # the common case: one cheap search per read
        kept = []
        end = 0
        for match in _EVENT.finditer(events):
            event = match.group()
            end = match.end()
            if any(marker in event for marker in _MARKERS) and self._usage_only(event):
                continue
            kept.append(event)
        kept.append(events[end:])  # bytes after the last event end (none from UpstreamStream)
        return b"".join(kept)

    def _usage_only(self, event: bytes) -> bool:
        """Reads the usage in `event`; True when the event is usage-only and the client did not ask for it."""
        data = b"".join(
            line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")
        )  # an event's data lines, joined (the SSE spec joins them with newlines; JSON does not care)
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(chunk, dict):
            return False
        total = total_tokens(chunk.get("usage"))
        if total is not None:
            self.total = total
        return not self.keep_usage_event and chunk.get("choices") == [] and total is not None
