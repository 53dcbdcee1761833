"""Reading the engine's reported usage: from a whole answer, and from a stream's usage event, which is dropped
when only the router asked for it."""

from __future__ import annotations

from server.usage import StreamUsage, body_usage, total_tokens

TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
DONE = b"data: [DONE]\n\n"


def test_total_tokens_reads_totals_or_parts_and_nothing_else() -> None:
    assert total_tokens({"total_tokens": 10}) == 10
    assert total_tokens({"prompt_tokens": 7, "completion_tokens": 3}) == 10
    assert total_tokens({"total_tokens": "10"}) is None and total_tokens(None) is None
    assert total_tokens({"total_tokens": True}) is None


def test_body_usage() -> None:
    assert body_usage(b'{"choices":[],"usage":{"total_tokens":12}}') == 12
    assert body_usage(b'{"choices":[],"usage": null}') is None
    assert body_usage(b'not json, but "usage":{') is None


def test_the_usage_event_is_read_and_dropped_when_the_client_did_not_ask() -> None:
    meter = StreamUsage(keep_usage_event=False)
    assert meter.feed(TOKEN) == TOKEN and meter.total is None
    assert meter.feed(TOKEN + USAGE + DONE) == TOKEN + DONE
    assert meter.total == 10


def test_the_usage_event_is_kept_when_the_client_asked() -> None:
    meter = StreamUsage(keep_usage_event=True)
    assert meter.feed(USAGE + DONE) == USAGE + DONE and meter.total == 10


def test_crlf_framed_usage_and_continuous_usage_stats() -> None:
    crlf = USAGE.replace(b"\n\n", b"\r\n\r\n")
    meter = StreamUsage(keep_usage_event=False)
    assert meter.feed(crlf + b"data: [DONE]\r\n\r\n") == b"data: [DONE]\r\n\r\n" and meter.total == 10
    running = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"total_tokens":8}}\n\n'
    meter = StreamUsage(keep_usage_event=False)
    assert meter.feed(running) == running and meter.total == 8  # a token chunk is never dropped
