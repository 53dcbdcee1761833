"""Connection limits (`server/connections.py`) over raw sockets: headers too large are a 431 before they are
buffered, slow headers and bodies are cut at their deadlines, a half-closed client still gets its answer,
1,000 slowloris connections neither starve legitimate requests nor outlive the header deadline, and requests over
`server.limit_concurrency` get a 503 (Anthropic's 529 on /v1/messages) that the official SDKs read. Every refusal
is in the shape of the request's route."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import resource
import select
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest

from server.config import parse_config

from .conftest import RunningTriage, free_port, run_triage, sim_model

CHAT = json.dumps({"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}).encode()
MESSAGE = CHAT  # the same body is a valid Anthropic Messages request


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningTriage]:
    server = {"header_timeout_s": 1.0, "body_timeout_s": 1.0, "max_header_bytes": 16 * 1024}
    config = parse_config({"models": [sim_model("fast", ["fast"], free_port())], "server": server})
    with run_triage(config) as triage:
        yield triage


def _connect(triage: RunningTriage) -> socket.socket:
    port = int(triage.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_all(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded by `timeout_s`)."""
    sock.settimeout(timeout_s)
    parts = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)


def _status_and_error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return status, error


def _anthropic_status_and_error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    payload = json.loads(body)
    assert payload["type"] == "error" and set(payload["error"]) == {"type", "message"}
    return status, payload["error"]


def _request(path: str, body: bytes, length: int | None = None) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
        + b"content-length: "
        + str(len(body) if length is None else length).encode()
        + b"\r\n\r\n"
        + body
    )


def _chat_request(body: bytes = CHAT, length: int | None = None) -> bytes:
    return _request("/v1/chat/completions", body, length)


def test_headers_over_the_limit_are_a_431_before_they_are_read_in_full(limited: RunningTriage) -> None:
    with _connect(limited) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: ")
        sent = 0
        for _ in range(1000):  # 64 MB at most; the server answers after 16 KB and a socket read or two
            readable, _, _ = select.select([sock], [], [], 0.01)
            if readable:
                break
            try:
                sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 65536
        assert sent < 4 * 1024 * 1024
        status, error = _status_and_error(_read_all(sock))
    assert status == 431 and "server.max_header_bytes" in str(error["message"])
    assert httpx.get(limited.base_url + "/health").status_code == 200


def test_many_small_headers_count_too(limited: RunningTriage) -> None:
    headers = {f"x-h{i}": "v" * 100 for i in range(200)}  # 20 KB in 200 headers
    response = httpx.get(limited.base_url + "/health", headers=headers)
    assert response.status_code == 431 and response.json()["error"]["code"] == "request_header_fields_too_large"
    assert httpx.get(limited.base_url + "/health", headers=dict(list(headers.items())[:50])).status_code == 200


def test_slow_headers_and_slow_bodies_are_cut_at_their_deadlines(limited: RunningTriage) -> None:
    with (
        _connect(limited) as headers_sock,
        _connect(limited) as body_sock,
        _connect(limited) as idle_sock,
        _connect(limited) as messages_sock,
    ):
        headers_sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")  # and never the blank line
        body_sock.sendall(_chat_request(CHAT[:10], length=len(CHAT)))  # a tenth of the body, then nothing
        messages_sock.sendall(_request("/v1/messages", MESSAGE[:10], length=len(MESSAGE)))
        answers = [_read_all(s, 5.0) for s in (headers_sock, body_sock, idle_sock, messages_sock)]
    for answer in answers[:3]:  # each an answer and a close by the server, before the client's 5 s ran out
        status, error = _status_and_error(answer)
        assert status == 408 and error["code"] == "request_timeout"
    assert "server.header_timeout_s" in answers[0].decode() and "server.body_timeout_s" in answers[1].decode()
    status, error = _anthropic_status_and_error(answers[3])  # Anthropic's route: Anthropic's shape
    assert status == 408 and error["type"] == "invalid_request_error"
    assert "server.body_timeout_s" in str(error["message"])


def test_headers_over_the_limit_on_anthropics_route_are_a_431_in_anthropics_shape(limited: RunningTriage) -> None:
    headers = {f"x-h{i}": "v" * 100 for i in range(200)}  # 20 KB in 200 headers
    response = httpx.post(limited.base_url + "/v1/messages", headers=headers, content=MESSAGE)
    assert response.status_code == 431 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "server.max_header_bytes" in body["error"]["message"] and set(body["error"]) == {"type", "message"}


def test_a_client_that_half_closes_after_its_request_gets_the_answer(limited: RunningTriage) -> None:
    for body in (CHAT, CHAT.replace(b'"max_tokens"', b'"stream": true, "max_tokens"')):
        with _connect(limited) as sock:
            sock.sendall(_chat_request(body))
            sock.shutdown(socket.SHUT_WR)
            answer = _read_all(sock).removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")  # clients skip a 1xx
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b"choices" in payload


def test_a_real_client_library_reads_the_answer_past_the_half_close_probe(limited: RunningTriage) -> None:
    """The answer to a half-closed request starts with a `100 Continue` (see `eof_received`); http.client skips
    it, as HTTP/1.1 clients must."""
    port = int(limited.base_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/v1/chat/completions", body=CHAT, headers={"content-type": "application/json"})
        assert connection.sock is not None
        connection.sock.shutdown(socket.SHUT_WR)
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["choices"]
    finally:
        connection.close()


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_slowloris_connections_starve_nobody_and_are_closed_at_the_header_deadline() -> None:
    slow_count, legit_count = 1000, 100
    _raise_fd_limit(2 * slow_count + 512)  # both ends of every connection live in this process
    config = parse_config({"models": [sim_model("fast", ["fast"], free_port())], "server": {"header_timeout_s": 5.0}})
    with run_triage(config) as triage:
        port = int(triage.base_url.rsplit(":", 1)[1])
        slow: list[socket.socket] = []
        closed_by_server: list[float] = []
        stop = threading.Event()
        try:
            for _ in range(slow_count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
                sock.setblocking(False)
                slow.append(sock)
            opened_s = time.monotonic()

            def trickle() -> None:
                """One header byte per connection every 0.5 s; note when the server closes each."""
                selector = selectors.DefaultSelector()
                for sock in slow:
                    selector.register(sock, selectors.EVENT_READ)
                next_s = time.monotonic()
                while not stop.is_set() and len(closed_by_server) < slow_count:
                    for key, _ in selector.select(timeout=0.05):
                        try:
                            data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                        except (BlockingIOError, ConnectionResetError):
                            data = b""
                        if not data or b"\r\n\r\n" in data:
                            selector.unregister(key.fileobj)
                            closed_by_server.append(time.monotonic() - opened_s)
                    if time.monotonic() >= next_s:
                        next_s += 0.5
                        for sock in list(selector.get_map().values()):
                            with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                                sock.fileobj.send(b"x")  # type: ignore[union-attr]
                selector.close()

            trickler = threading.Thread(target=trickle, daemon=True)
            trickler.start()
            with httpx.Client(base_url=triage.base_url, timeout=20) as client, ThreadPoolExecutor(8) as pool:
                statuses = list(
                    pool.map(
                        lambda _: client.post("/v1/chat/completions", content=CHAT).status_code, range(legit_count)
                    )
                )
            held_while_served = slow_count - len(closed_by_server)
            trickler.join(20)
        finally:
            stop.set()
            for sock in slow:
                sock.close()
    assert statuses == [200] * legit_count
    assert held_while_served == slow_count  # served while every slow connection was still open
    assert len(closed_by_server) == slow_count  # and none outlived the header deadline


@pytest.fixture(scope="module")
def capped() -> Iterator[RunningTriage]:
    """Three connections at most, a new one counted (uvicorn's rule): two held open leave no room for a third."""
    server = {"limit_concurrency": 3, "header_timeout_s": 60.0, "keep_alive_timeout_s": 60.0}
    config = parse_config({"models": [sim_model("fast", ["fast"], free_port())], "server": server})
    with run_triage(config) as triage:
        yield triage


@contextlib.contextmanager
def _held(triage: RunningTriage, count: int) -> Iterator[None]:
    """`count` connections the server has surely accepted (each answered a request), each then halfway through
    the headers of the next request; closed on exit."""
    port = int(triage.base_url.rsplit(":", 1)[1])
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(count)]
    try:
        for connection in connections:
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            assert connection.sock is not None
            connection.sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")  # and no more
        yield
    finally:
        for connection in connections:
            connection.close()


def test_requests_over_the_concurrency_cap_get_a_503_in_the_routes_shape_and_the_cap_frees(
    capped: RunningTriage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.connections")
    chat_args: dict[str, Any] = {"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    openai_client = openai.OpenAI(base_url=capped.base_url + "/v1", api_key="unused", max_retries=0, timeout=20)
    claude = anthropic.Anthropic(base_url=capped.base_url, api_key="unused", max_retries=0, timeout=20)
    try:
        with _held(capped, 2):
            with pytest.raises(openai.InternalServerError) as refused:
                openai_client.chat.completions.create(**chat_args)
            with pytest.raises(anthropic.OverloadedError) as overloaded:
                claude.messages.create(**chat_args)
            raw = [httpx.post(capped.base_url + path, content=CHAT) for path in ("/v1/responses", "/v1/messages")]
        # OpenAI's shape, with the status and Retry-After an SDK retries on
        response = refused.value.response
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "engine_unavailable" and error["code"] == "overloaded"
        assert "server.limit_concurrency" in error["message"]
        # Anthropic's shape on /v1/messages: 529 overloaded_error
        assert overloaded.value.status_code == 529 and overloaded.value.response.headers["retry-after"] == "1"
        assert overloaded.value.response.json() == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": error["message"]},
        }
        assert [r.status_code for r in raw] == [503, 529]
        assert raw[0].json()["error"]["code"] == "overloaded"
        assert raw[1].json()["error"]["type"] == "overloaded_error"
        # one warning for the four refusals (a storm logs one line per 10 s, not one per refusal)
        warnings = [r for r in caplog.records if r.name == "server.connections" and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "server.limit_concurrency" in warnings[0].getMessage()

        # The held connections closed: nothing stays counted. One held again leaves room for each client's one.
        deadline = time.monotonic() + 10  # the server sees the closes a moment after the client makes them
        while True:
            try:
                openai_client.chat.completions.create(**chat_args)
                break
            except openai.InternalServerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        openai_client.close()  # its kept-alive connection would count
        with _held(capped, 1):
            for _ in range(3):
                assert claude.messages.create(**chat_args).content
    finally:
        openai_client.close()
        claude.close()
