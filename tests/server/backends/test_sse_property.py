"""Property: however the engine's bytes are chunked on the wire, `UpstreamStream` yields exactly the same SSE
events, each yield holding whole events only."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.backends.base import UpstreamStream

# Event payloads: any text without the blank-line separator (JSON chunks, [DONE], error objects alike).
payloads = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=40).filter(
    lambda s: "\n\n" not in s and not s.endswith("\n") and not s.startswith("\n")
)


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self.chunks.pop(0) if self.chunks else b""


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Content(chunks)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def _relay(chunks: list[bytes]) -> list[bytes]:
    stream = UpstreamStream(_Response(chunks), "m", 1.0)  # type: ignore[arg-type]
    return [events async for events in stream]


@settings(max_examples=300, deadline=None)
@given(events=st.lists(payloads, min_size=1, max_size=12), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_any_chunking_yields_the_same_events(events: list[str], cuts: list[int]) -> None:
    wire = b"".join(b"data: " + e.encode() + b"\n\n" for e in events)
    yielded = asyncio.run(_relay(_chunked(wire, cuts)))
    assert all(y.endswith(b"\n\n") for y in yielded)  # never a partial event
    assert b"".join(yielded) == wire


@settings(max_examples=100, deadline=None)
@given(events=st.lists(payloads, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 1000), max_size=10))
def test_unterminated_last_event_is_passed_on(events: list[str], cuts: list[int]) -> None:
    wire = b"".join(b"data: " + e.encode() + b"\n\n" for e in events)[:-2]  # the engine forgot the last \n\n
    yielded: Any = asyncio.run(_relay(_chunked(wire, cuts)))
    assert b"".join(yielded) == wire + b"\n\n"
