"""What `duet serve`'s uvicorn bounds (duet.server): the time and size of a request's headers,
idle kept-open connections, connections at once; served for real, spoken to over sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from app_server import serve_asgi
from duet.server import server_options
from duet.settings import Settings
from raw_http import closed_by_server, connect, read_response
from starlette.types import Receive, Scope, Send

HEADER_TIMEOUT = 0.5
REQUEST = b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers "ok"; /slow takes three header timeouts to answer, in three pieces."""
    if scope["type"] != "http":
        return
    slow = scope["path"] == "/slow"
    body = b"ok" * 3 if slow else b"ok"
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(3 if slow else 1):
        if slow:
            await asyncio.sleep(HEADER_TIMEOUT)
        await send({"type": "http.response.body", "body": b"ok", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def settings(**changes: object) -> Settings:
    values: dict[str, object] = {"header_timeout": HEADER_TIMEOUT, "max_header_bytes": 8192}
    return Settings(**{**values, **changes})  # type: ignore[arg-type]


def answered_ok(sock: socket.socket) -> bool:
    response = read_response(sock)
    return response is not None and response.status == 200 and response.body == b"ok"


@pytest.fixture
def served() -> Iterator[str]:
    with serve_asgi(app, **server_options(settings(keep_alive_timeout=5.0))) as url:
        yield url


def test_headers_that_trickle_in_are_refused_in_time(served: str) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        started = time.monotonic()
        response = read_response(sock)
        waited = time.monotonic() - started
        assert response is not None
        assert response.status == 408
        assert b"DUET_HEADER_TIMEOUT" in response.body
        assert HEADER_TIMEOUT * 0.8 < waited < HEADER_TIMEOUT + 2
        assert closed_by_server(sock)


def test_the_deadline_counts_from_the_connection_not_the_last_byte(served: str) -> None:
    with connect(served) as sock:
        started = time.monotonic()
        for piece in (b"GET / HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(HEADER_TIMEOUT / 3)
        response = read_response(sock)
        assert response is not None
        assert response.status == 408
        assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(served: str) -> None:
    with connect(served) as sock:
        started = time.monotonic()
        assert closed_by_server(sock)
        assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_headers_over_the_size_are_refused(served: str) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        try:
            for _ in range(64):
                sock.sendall(b"a" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = read_response(sock)
        assert response is not None
        assert response.status == 431


def test_a_later_request_on_a_kept_open_connection_has_the_same_bounds(served: str) -> None:
    """Its first read counts toward the size limit too, and headers that trickle in are
    answered 408 (not closed as if the connection had sent nothing)."""
    with connect(served) as sock:
        sock.sendall(REQUEST % b"")
        assert answered_ok(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 7000)
        time.sleep(0.1)  # two reads: the limit (8192 bytes) is passed in the second
        sock.sendall(b"a" * 3000)
        response = read_response(sock)
        assert response is not None
        assert response.status == 431
    with connect(served) as sock:
        sock.sendall(REQUEST % b"")
        assert answered_ok(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        response = read_response(sock)
        assert response is not None
        assert response.status == 408


def test_kept_open_connections_and_long_answers_are_not_cut(served: str) -> None:
    with connect(served) as sock:
        sock.sendall(REQUEST % b"")
        assert answered_ok(sock)
        # Idle for longer than the header timeout, within the keep-alive timeout.
        time.sleep(HEADER_TIMEOUT * 2)
        sock.sendall(REQUEST % b"")
        assert answered_ok(sock)
        # An answer that takes three header timeouts to arrive is not the headers' business.
        sock.sendall(REQUEST % b"slow")
        response = read_response(sock)
        assert response is not None
        assert response.body == b"okokok"
        # And the next request on the connection gets its full header time again.
        sock.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(b"Host: 127.0.0.1\r\n\r\n")
        assert answered_ok(sock)


def test_an_idle_kept_open_connection_is_closed_after_the_keep_alive_timeout() -> None:
    options = server_options(settings(keep_alive_timeout=0.3, header_timeout=30.0))
    with serve_asgi(app, **options) as url, connect(url) as sock:
        sock.sendall(REQUEST % b"")
        assert answered_ok(sock)
        started = time.monotonic()
        assert closed_by_server(sock)
        assert time.monotonic() - started < 3


def test_connections_past_the_limit_are_answered_503() -> None:
    options = server_options(settings(max_connections=2, header_timeout=30.0))
    with serve_asgi(app, **options) as url, connect(url) as first, connect(url) as second:
        for held in (first, second):
            held.sendall(b"GET / HTTP/1.1\r\n")  # connections held open, mid-headers
        time.sleep(0.1)
        with connect(url) as third:
            third.sendall(REQUEST % b"")
            response = read_response(third)
        assert response is not None
        assert response.status == 503
