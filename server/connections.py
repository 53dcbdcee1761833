"""Connection limits below the app: uvicorn's httptools protocol with bounded reads and a concurrency cap.

A request's headers exist in full only once they have been parsed, so no middleware can bound what reading them
costs: httptools collects a header value in Python bytes, chunk by chunk, before any callback sees it (four
64 MB headers once took the router from 85 to 427 MB and stalled it for 12 s). `TriageHttpProtocol` therefore
counts the bytes that arrive before the headers are complete and answers 431 once they pass
`server.max_header_bytes`; memory held by one connection's header phase stays under that limit plus one socket
read. It also bounds time: a connection must finish its headers within `server.header_timeout_s` of its first
byte (or of opening), and its body within `server.body_timeout_s` of the headers, else it gets a 408 and is
closed (uvicorn has no header or body read timeout of its own with httptools). A client that half-closes its
side after sending a whole request (`shutdown(SHUT_WR)`) still gets its answer, where asyncio's default would
close the connection at the EOF; one that closed its socket is still found gone within about a second
(`eof_received`). It also owns `server.limit_concurrency`, with uvicorn's rule (a request whose headers
complete while that many connections, or that many requests, are open counting its own, is refused; uvicorn's
own cap is off): a 503 with Retry-After, then the connection is closed. `uvicorn_options()` passes the class and
uvicorn's `timeout_keep_alive`.

Every refusal here (408, 431, 503) is a JSON error in the shape of the request's route (`errors.http_error`,
the dialect from `protocols.dialect_of` of the path as far as it has arrived; OpenAI's before any path), so
`/v1/messages` gets Anthropic's shape and its 529 `overloaded_error` where others get 503.

What protects the header phase: the byte cap and the header deadline above, per connection, and
`limit_concurrency` across connections (a slow connection holds a socket and a few KB until its deadline).
Nothing here tells a slow client from an attacker, or limits connections per address; put a proxy in front of a
router exposed to the internet. Knows nothing about routes beyond each path's error shape, nor keys or routing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import time
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import ServerConfig
from .errors import Dialect, HeadersTooLarge, Overloaded, RequestTimeout, TriageError, http_error
from .protocols import dialect_of

log = logging.getLogger(__name__)
PEER_CHECKS_S = (0.02, 0.1, 0.3, 0.6)  # after a half-close, when to look for a reset (cumulative: about 1 s)
LINGER_S = 1.0  # how long a refused connection's further bytes are read and dropped before it is closed
OVERLOAD_WARN_EVERY_S = 10.0  # a storm of refusals over server.limit_concurrency logs one warning per this


@dataclass(slots=True)
class _WarningGate:
    """One warning per `OVERLOAD_WARN_EVERY_S` for refusals over the concurrency cap, counting those not logged."""

    next_s: float = 0.0  # time.monotonic() from which the next refusal is logged
    unlogged: int = 0  # refusals since the last warning


class _Phase(enum.Enum):
    HEADERS = "headers"  # waiting for (the rest of) a request's headers, or for a new connection's first byte
    BODY = "body"  # headers parsed, body not complete
    ANSWERING = "answering"  # the request is complete; the app answers (the deadline is the app's business)


class TriageHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header byte cap, read deadlines, a concurrency cap, and answers after
    a half-close.

    Use `protocol_class(server_config)`, which binds the limits; uvicorn builds one instance per connection."""

    max_header_bytes: ClassVar[int] = 64 * 1024
    header_timeout_s: ClassVar[float] = 10.0
    body_timeout_s: ClassVar[float] = 60.0
    # server.limit_concurrency (uvicorn's own `limit_concurrency`, an instance attribute, is None: this class
    # enforces the cap so that its refusal speaks the route's protocol)
    concurrency_cap: ClassVar[int] = 4096
    overload_warnings: ClassVar[_WarningGate] = _WarningGate()  # one per bound class (`protocol_class`)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = b""  # this request's target as far as it has arrived (uvicorn resets it per request)
        self._phase = _Phase.HEADERS
        self._header_bytes = 0  # bytes read while this request's headers were incomplete
        self._parsed_bytes = 0  # bytes of this request's URL and headers the parser has handed over
        self._deadline: asyncio.TimerHandle | None = None
        self._rejected = False  # an error answer went out and the connection is closing

    # -- connection events ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # lingering: dropped
        counting = self._phase is _Phase.HEADERS
        if counting and self._deadline is None:  # bytes after an idle keep-alive: a new request is starting
            self._arm(self.header_timeout_s)
        super().data_received(data)
        if counting and self._phase is _Phase.HEADERS and not self._rejected:
            self._header_bytes += len(data)  # this read ended inside the headers: all of it counts
            if self._header_bytes > self.max_header_bytes:
                self._reject(self._too_large())

    def _too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"request headers exceed {self.max_header_bytes} bytes (server.max_header_bytes); send fewer or "
            "smaller headers"
        )

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol allows a bool
        """Keep the connection open for the answer when the client half-closes after a whole request.

        A FIN alone does not say whether the client only stopped sending (`shutdown(SHUT_WR)`) or went away
        (`close()`); what its kernel does with our next bytes does: a closed socket answers them with a reset.
        So an answer not yet begun is preceded by `100 Continue`, which every HTTP/1.1 client must skip, and
        the socket is checked for that reset a few times over the next second; a client that went away is
        reported gone, which cancels its engine request, as before."""
        cycle = self.cycle
        if self._rejected or self._phase is not _Phase.ANSWERING or cycle is None or cycle.response_complete:
            return None  # asyncio closes the transport: nothing more can arrive, and nothing is owed
        if cycle.scope["http_version"] != "1.1":
            return None  # no 1xx for HTTP/1.0: an EOF means the client is gone
        cycle.keep_alive = False  # close once the answer is out
        if not cycle.response_started:  # once bytes flow, a reset shows on the next write by itself
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._check_peer(PEER_CHECKS_S)
        return True

    def _check_peer(self, delays_s: tuple[float, ...]) -> None:
        """After a half-close: report the client gone once its socket was reset; check again after each delay."""
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or cycle.response_complete:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
        elif delays_s:
            self.loop.call_later(delays_s[0], self._check_peer, delays_s[1:])

    # -- parser callbacks ----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._rejected:
            return
        super().on_message_begin()
        self._phase = _Phase.HEADERS
        self._header_bytes = 0
        self._parsed_bytes = 0
        if self._deadline is None:
            self._arm(self.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # 4: ": " and CRLF
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        """Headers that arrived in one read are counted here, as the parser hands them over."""
        self._parsed_bytes += size
        if self._parsed_bytes > self.max_header_bytes and not self._rejected:
            self._reject(self._too_large())

    def on_headers_complete(self) -> None:
        if self._rejected:
            return
        self._phase = _Phase.BODY
        pipelined = self.cycle is not None and not self.cycle.response_complete
        # uvicorn's rule, this connection counted: refuse at `cap` open, not past it. Unlike uvicorn, a pipelined
        # request is not refused: its connection is counted already, and its task starts only once the answer
        # before it is out, so it adds no concurrency (and a raw refusal now would cut that answer).
        cap = self.concurrency_cap
        if not pipelined and (len(self.connections) >= cap or len(self.tasks) >= cap):
            self._reject(self._overloaded())
            return
        super().on_headers_complete()
        self._disarm()
        if not pipelined:  # a pipelined request's body waits, unread, for the answer before it
            self._arm(self.body_timeout_s)

    def _overloaded(self) -> Overloaded:
        connections, tasks = len(self.connections), len(self.tasks)
        gate = self.overload_warnings
        now_s = time.monotonic()
        if now_s >= gate.next_s:  # a storm of refusals logs one line per OVERLOAD_WARN_EVERY_S, not one each
            log.warning(
                "refusing requests: %d connections and %d requests open, at server.limit_concurrency (%d); "
                "%d more refused since the last warning",
                connections,
                tasks,
                self.concurrency_cap,
                gate.unlogged,
            )
            gate.next_s, gate.unlogged = now_s + OVERLOAD_WARN_EVERY_S, 0
        else:
            gate.unlogged += 1
        return Overloaded(
            f"the router has {self.concurrency_cap} connections or requests open, its limit "
            "(server.limit_concurrency); retry after a moment"
        )

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        super().on_message_complete()
        self._phase = _Phase.ANSWERING
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase is _Phase.ANSWERING:
            self._phase = _Phase.HEADERS  # the next request's header deadline starts with its first byte

    # -- deadlines and refusals ----------------------------------------------------------------------------

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase is _Phase.BODY:
            limit = f"the body within {self.body_timeout_s:g} s of the headers (server.body_timeout_s)"
        elif self._phase is _Phase.HEADERS:
            limit = f"the headers within {self.header_timeout_s:g} s (server.header_timeout_s)"
        else:
            return
        log.info("closing a connection that did not send %s", limit)
        self._reject(RequestTimeout(f"the request did not arrive in time: send {limit}"))

    def _dialect(self) -> Dialect:
        """The error shape of this request's route, from its target as far as it has arrived (uvicorn's path:
        root path plus the unquoted path of an origin- or absolute-form target); OpenAI's before it arrives."""
        target = self.url.decode("latin-1")
        try:
            path = urllib.parse.urlsplit(target).path
        except ValueError:  # a malformed authority ("http://[x/..."): not a route of ours
            return "openai"
        return dialect_of(self.root_path + urllib.parse.unquote(path))

    def _reject(self, exc: TriageError) -> None:
        """Answer `exc` (unless an answer has begun on this connection) and close the connection."""
        self._rejected = True
        self._disarm()
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if not answering:
            error = http_error(exc, dialect=self._dialect())
            try:
                phrase = HTTPStatus(error.status).phrase
            except ValueError:  # Anthropic's 529 has none; the reason phrase may be empty (RFC 9112)
                phrase = ""
            head = (
                f"HTTP/1.1 {error.status} {phrase}\r\ncontent-type: application/json\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in error.headers.items())
                + f"content-length: {len(error.body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + error.body)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() reports the client gone; its sends go nowhere
            cycle.message_event.set()
        # A lingering close: stop writing, read and drop what the client is still sending for a moment, then
        # close. Closing at once with unread bytes would reset the connection and could lose the answer.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._deadline = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()


def protocol_class(server: ServerConfig) -> type[TriageHttpProtocol]:
    """`TriageHttpProtocol` with `server`'s limits bound (uvicorn takes a class and builds it per connection)."""
    limits = {
        "max_header_bytes": server.max_header_bytes,
        "header_timeout_s": server.header_timeout_s,
        "body_timeout_s": server.body_timeout_s,
        "concurrency_cap": server.limit_concurrency,
        "overload_warnings": _WarningGate(),
    }
    return type("TriageHttpProtocol", (TriageHttpProtocol,), limits)


def uvicorn_options(server: ServerConfig) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.Config` that carry `server`'s connection limits."""
    return {
        "http": protocol_class(server),
        "limit_concurrency": None,  # enforced by the protocol class, in the route's error shape
        "timeout_keep_alive": server.keep_alive_timeout_s,
    }
