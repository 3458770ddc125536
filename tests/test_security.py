"""duet.security's middleware, each on a tiny Starlette app: through httpx's ASGI transport, by
calling it with hand-made ASGI messages where timing matters, and served by uvicorn where only
a real socket shows what was read."""

from __future__ import annotations

import asyncio
import json
import select
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_server import serve_asgi
from duet import security
from duet.security import (
    CheckCrossSite,
    CheckHost,
    LimitBody,
    LimitStreams,
    SecurityHeaders,
    allowed_hosts,
)
from duet.settings import Settings
from raw_http import closed_by_server, connect, read_response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_URL = "http://127.0.0.1:8080"
ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
STATE_CHANGING = ["POST", "PUT", "PATCH", "DELETE"]
LOOPBACK = allowed_hosts(Settings())


class Calls:
    """What reached the tiny app: one entry per request, and the body bytes it was given."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.body_bytes = 0


def tiny_app(calls: Calls, static_dir: Path | None = None) -> Starlette:
    async def thing(request: Request) -> Response:
        calls.requests.append(request.method)
        return PlainTextResponse("done")

    async def echo(request: Request) -> Response:
        calls.requests.append(request.method)
        async for chunk in request.stream():
            calls.body_bytes += len(chunk)
        return PlainTextResponse(str(calls.body_bytes))

    async def ticks(request: Request) -> Response:
        calls.requests.append(request.method)

        async def produce() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()

        return StreamingResponse(produce(), media_type="text/event-stream")

    routes: list[Any] = [
        Route("/thing", thing, methods=ALL_METHODS),
        Route("/echo", echo, methods=["POST"]),
        Route("/answers/1/stream", ticks),
    ]
    if static_dir is not None:
        routes.append(Mount("/static", StaticFiles(directory=static_dir)))
    return Starlette(routes=routes)


def client(app: ASGIApp, base_url: str = BASE_URL) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    (tmp_path / "duet.css").write_text("body {}", encoding="utf-8")
    return tmp_path


# --- direct ASGI calls ----------------------------------------------------------------------


def http_scope(
    method: str = "GET",
    path: str = "/thing",
    headers: dict[str, str] | None = None,
    client_address: str = "127.0.0.1",
) -> dict[str, Any]:
    headers = {"host": "127.0.0.1:8080", **(headers or {})}
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": (client_address, 50000),
        "server": ("127.0.0.1", 8080),
    }


class Reply:
    """The messages a middleware sent, as they came."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in self.messages[0].get("headers", [])
        }

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def body_from(
    chunks: list[bytes],
    complete: bool = True,
    then: Callable[[], Awaitable[Message]] | None = None,
) -> Receive:
    """A receive that gives `chunks` as the body (its end if `complete`), then waits on `then`
    (for ever if None)."""
    queue = list(chunks)

    async def receive() -> Message:
        if queue:
            chunk = queue.pop(0)
            more = bool(queue) or not complete
            return {"type": "http.request", "body": chunk, "more_body": more}
        if then is None:
            await asyncio.Event().wait()
        assert then is not None
        return await then()

    return receive


class EndlessBody:
    """A body that never ends, in chunks of `size` bytes, counting how many were read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads = 0

    async def receive(self) -> Message:
        self.reads += 1
        return {"type": "http.request", "body": b"x" * self.size, "more_body": True}


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def error_of(reply: Reply) -> str:
    return str(json.loads(reply.body)["error"])


# --- CheckHost ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:8080",
        "127.0.0.1:1",
        "localhost:8080",
        "LOCALHOST:8080",
        "localhost.:8080",
        "[::1]",
        "[::1]:8080",
    ],
)
async def test_loopback_names_pass_with_any_port(calls: Calls, host: str) -> None:
    async with client(CheckHost(tiny_app(calls), LOOPBACK)) as http:
        response = await http.get("/thing", headers={"Host": host})
    assert response.status_code == 200
    assert calls.requests == ["GET"]


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8091",
    "127.0.0.1.evil.example",
    "localhost.evil.example:8080",
    "127.0.0.2:8080",
    "[::2]:8080",
    "127.0.0.1:8080@evil.example",
    "127.0.0.1:abc",
    "[::1",
    "",
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize("method", ALL_METHODS)
async def test_a_foreign_host_is_refused_for_every_method(
    calls: Calls, host: str, method: str
) -> None:
    async with client(CheckHost(tiny_app(calls), LOOPBACK)) as http:
        response = await http.request(method, "/thing", headers={"Host": host})
    assert response.status_code == 400
    assert calls.requests == []
    if method != "HEAD":
        assert "DUET_ALLOWED_HOSTS" in response.json()["error"]


async def test_a_foreign_host_gets_no_static_file_and_no_stream(
    calls: Calls, static_dir: Path
) -> None:
    async with client(CheckHost(tiny_app(calls, static_dir), LOOPBACK)) as http:
        assert (await http.get("/static/duet.css")).status_code == 200
        foreign = {"Host": "evil.example:8080"}
        assert (await http.get("/static/duet.css", headers=foreign)).status_code == 400
        assert (await http.get("/answers/1/stream", headers=foreign)).status_code == 400
        assert (await http.get("/no/such/route", headers=foreign)).status_code == 400
    assert calls.requests == []


async def test_a_request_without_host_is_refused(calls: Calls) -> None:
    scope = http_scope()
    scope["headers"] = []
    reply = Reply()
    await CheckHost(tiny_app(calls), LOOPBACK)(scope, no_body, reply.send)
    assert reply.status == 400
    assert "no Host header" in error_of(reply)


def test_allowed_hosts_are_loopback_the_bind_address_and_the_setting() -> None:
    assert allowed_hosts(Settings()) == {"127.0.0.1", "localhost", "[::1]"}
    shared = allowed_hosts(Settings(host="0.0.0.0", allowed_hosts=" Duet.LAN, 192.168.1.20 ,"))
    assert shared == {"127.0.0.1", "localhost", "[::1]", "duet.lan", "192.168.1.20"}
    assert "[fe80::1]" in allowed_hosts(Settings(host="fe80::1"))
    assert "10.0.0.5" in allowed_hosts(Settings(host="10.0.0.5"))
    assert "[fd00::5]" in allowed_hosts(Settings(allowed_hosts="fd00::5,[fd00::6]:8080"))
    with pytest.raises(ValueError, match="DUET_ALLOWED_HOSTS: 'duet lan'"):
        allowed_hosts(Settings(allowed_hosts="duet lan"))


async def test_a_name_from_the_setting_passes(calls: Calls) -> None:
    allowed = allowed_hosts(Settings(allowed_hosts="duet.lan"))
    async with client(CheckHost(tiny_app(calls), allowed)) as http:
        assert (await http.post("/thing", headers={"Host": "duet.lan:8080"})).status_code == 200


async def test_refusals_take_the_shape_of_user_errors(calls: Calls) -> None:
    app = CheckHost(tiny_app(calls), LOOPBACK)
    foreign = {"Host": "<b>evil</b>"}
    async with client(app) as http:
        as_json = await http.get("/thing", headers=foreign)
        as_text = await http.get("/thing", headers={**foreign, "Accept": "text/html"})
        as_fragment = await http.get("/thing", headers={**foreign, "HX-Request": "true"})
    assert as_json.headers["content-type"] == "application/json"
    assert "'<b>evil</b>'" in as_json.json()["error"]
    assert as_text.headers["content-type"].startswith("text/plain")
    assert as_fragment.headers["content-type"].startswith("text/html")
    assert as_fragment.headers["hx-retarget"] == "#flash"
    assert as_fragment.headers["hx-reswap"] == "innerHTML"
    assert as_fragment.text.startswith('<p class="flash flash-error" role="alert">')
    assert "<b>" not in as_fragment.text
    assert "&lt;b&gt;evil&lt;/b&gt;" in as_fragment.text


# --- CheckCrossSite -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "passes"),
    [
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8080"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1:8080"}, False),
        ({"Sec-Fetch-Site": "bogus"}, False),
        ({"Origin": "http://127.0.0.1:8080"}, True),
        ({"Origin": "HTTP://127.0.0.1:8080"}, True),
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "http://127.0.0.1:3000"}, False),
        ({"Origin": "http://localhost:8080"}, False),
        ({"Origin": "https://127.0.0.1:8080"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": ""}, False),
        ({}, True),
        ({"Authorization": "Bearer duet-token", "Sec-Fetch-Site": "cross-site"}, False),
        (
            {
                "Authorization": "Bearer duet-token",
                "Cookie": "session=1",
                "Origin": "http://evil.example",
            },
            False,
        ),
        ({"Authorization": "Bearer duet-token"}, True),
        ({"Referer": "http://evil.example/"}, True),
    ],
)
@pytest.mark.parametrize("method", STATE_CHANGING)
async def test_state_changing_requests_must_be_same_origin(
    calls: Calls, method: str, headers: dict[str, str], passes: bool
) -> None:
    async with client(CheckCrossSite(tiny_app(calls))) as http:
        response = await http.request(method, "/thing", headers=headers, content=b"x=1")
    assert response.status_code == (200 if passes else 403)
    assert calls.requests == ([method] if passes else [])
    if not passes:
        assert response.json()["error"].startswith("Refused: this request came from another")


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
async def test_safe_methods_pass_from_anywhere(calls: Calls, method: str) -> None:
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    async with client(CheckCrossSite(tiny_app(calls))) as http:
        response = await http.request(method, "/thing", headers=cross)
    assert response.status_code == 200


def test_default_ports_are_the_same_origin() -> None:
    scope = http_scope(headers={"host": "duet.lan", "origin": "http://duet.lan:80"})
    assert security.cross_site_reason(scope) is None
    scope = http_scope(headers={"host": "duet.lan:80", "origin": "http://duet.lan"})
    assert security.cross_site_reason(scope) is None
    scope = http_scope(headers={"host": "duet.lan:443", "origin": "http://duet.lan"})
    assert security.cross_site_reason(scope) is not None


async def test_a_forged_request_is_refused_before_its_body_is_read(calls: Calls) -> None:
    body = EndlessBody(1000)
    reply = Reply()
    scope = http_scope("POST", "/echo", {"sec-fetch-site": "cross-site", "hx-request": "true"})
    await CheckCrossSite(tiny_app(calls))(scope, body.receive, reply.send)
    assert reply.status == 403
    assert b"Sec-Fetch-Site: cross-site" in reply.body
    assert body.reads == 0
    assert calls.requests == []


# --- SecurityHeaders ------------------------------------------------------------------------


def assert_security_headers(headers: httpx.Headers | dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"


async def test_every_response_carries_the_security_headers(calls: Calls, static_dir: Path) -> None:
    app = SecurityHeaders(CheckHost(CheckCrossSite(tiny_app(calls, static_dir)), LOOPBACK))
    async with client(app) as http:
        responses = [
            await http.get("/static/duet.css"),
            await http.get("/answers/1/stream"),
            await http.get("/no/such/route"),
            await http.get("/thing", headers={"Host": "evil.example"}),
            await http.post("/thing", headers={"Sec-Fetch-Site": "cross-site"}),
            await http.head("/thing"),
        ]
    assert [r.status_code for r in responses] == [200, 200, 404, 400, 403, 200]
    for response in responses:
        assert_security_headers(response.headers)
        assert response.headers["x-frame-options"] == "DENY"


async def test_a_header_the_route_set_is_kept() -> None:
    own = PlainTextResponse("framed", headers={"X-Frame-Options": "SAMEORIGIN"})
    async with client(SecurityHeaders(own)) as http:
        response = await http.get("/")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert_security_headers(response.headers)


async def test_streams_pass_through_unbuffered() -> None:
    release = asyncio.Event()

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 2\n\n"})

    reply = Reply()
    task = asyncio.create_task(SecurityHeaders(stream)(http_scope(), no_body, reply.send))
    for _ in range(100):
        if len(reply.messages) == 2:
            break
        await asyncio.sleep(0.01)
    # The first event is out while the stream is still open.
    assert [m.get("body") for m in reply.messages[1:]] == [b"data: 1\n\n"]
    assert_security_headers(reply.headers)
    release.set()
    await task
    assert reply.body == b"data: 1\n\ndata: 2\n\n"


# --- LimitBody ------------------------------------------------------------------------------

LIMIT = 1000


async def test_a_body_within_the_limit_is_read_whole(calls: Calls) -> None:
    async with client(LimitBody(tiny_app(calls), LIMIT, timeout=5)) as http:
        response = await http.post("/echo", content=b"x" * LIMIT)
    assert response.status_code == 200
    assert response.text == str(LIMIT)


async def test_a_declared_body_over_the_limit_is_refused_before_the_app_runs(
    calls: Calls,
) -> None:
    async with client(LimitBody(tiny_app(calls), LIMIT, timeout=5)) as http:
        response = await http.post("/thing", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert "1,001 bytes" in response.json()["error"]
    assert "DUET_MAX_BODY_BYTES" in response.json()["error"]
    # /thing never reads its body: the route did not run at all.
    assert calls.requests == []


@pytest.mark.parametrize("declared", ["\u0661\u0660", "12abc", "-1", " "])
async def test_a_content_length_that_is_no_number_is_refused(calls: Calls, declared: str) -> None:
    reply = Reply()
    scope = http_scope("POST", "/echo", {"content-length": declared})
    await LimitBody(tiny_app(calls), LIMIT, timeout=5)(scope, no_body, reply.send)
    assert reply.status == 400
    assert calls.requests == []


async def test_a_chunked_body_stops_being_read_at_the_limit(calls: Calls) -> None:
    body = EndlessBody(300)
    reply = Reply()
    scope = http_scope("POST", "/echo", {"transfer-encoding": "chunked"})
    await LimitBody(tiny_app(calls), LIMIT, timeout=5)(scope, body.receive, reply.send)
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    # 300 + 300 + 300 reached the app; the fourth chunk passed the limit and went no further.
    assert body.reads == 4
    assert calls.body_bytes == 900


async def test_a_slow_body_is_refused_in_time(calls: Calls) -> None:
    reply = Reply()
    scope = http_scope("POST", "/echo", {"content-length": "500"})
    slow = body_from([b"x"], complete=False)
    started = time.monotonic()
    await LimitBody(tiny_app(calls), LIMIT, timeout=0.2)(scope, slow, reply.send)
    assert reply.status == 408
    assert reply.headers["connection"] == "close"
    assert "DUET_BODY_TIMEOUT" in error_of(reply)
    assert time.monotonic() - started < 2


async def test_a_cancelled_request_is_not_taken_for_a_slow_body(calls: Calls) -> None:
    """A request cancelled while its body is awaited (the server shutting down) stays
    cancelled: only the body's own deadline is turned into a 408."""
    reply = Reply()
    scope = http_scope("POST", "/echo", {"content-length": "500"})
    slow = body_from([b"x"], complete=False)
    task = asyncio.create_task(
        LimitBody(tiny_app(calls), LIMIT, timeout=30)(scope, slow, reply.send)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reply.messages == []


async def test_the_timeout_ends_with_the_body(calls: Calls) -> None:
    """After the body, an app waits on receive for the client to leave (a streaming response
    does, for as long as it streams): that wait is not the body's and has no deadline."""

    async def late_disconnect() -> Message:
        await asyncio.sleep(0.5)
        return {"type": "http.disconnect"}

    async def waits_after_body(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["body"] == b"x" * 10
        assert (await receive())["type"] == "http.disconnect"
        await PlainTextResponse("stayed")(scope, receive, send)

    reply = Reply()
    scope = http_scope("POST", "/echo", {"content-length": "10"})
    receive = body_from([b"x" * 10], then=late_disconnect)
    await LimitBody(waits_after_body, LIMIT, timeout=0.1)(scope, receive, reply.send)
    assert reply.status == 200


async def test_the_refusal_answers_whatever_the_app_makes_of_it() -> None:
    """An app (or a framework) that catches the error from receive and answers on its own
    still gets the refusal sent, not its own answer."""

    async def swallows(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while (await receive()).get("more_body"):
                pass
        except Exception:
            await PlainTextResponse("There was an error parsing the body", 400)(
                scope, receive, send
            )

    reply = Reply()
    scope = http_scope("POST", "/echo", {"transfer-encoding": "chunked"})
    await LimitBody(swallows, LIMIT, timeout=5)(scope, body_from([b"x" * 600] * 3), reply.send)
    assert reply.status == 413
    assert len(reply.messages) == 2


async def test_a_request_without_a_body_is_not_wrapped(calls: Calls) -> None:
    received: list[Receive] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(receive)
        await PlainTextResponse("ok")(scope, receive, send)

    reply = Reply()
    await LimitBody(app, LIMIT, timeout=5)(http_scope(), no_body, reply.send)
    assert received == [no_body]


@pytest.fixture
def served_body_limit(calls: Calls) -> Iterator[str]:
    with serve_asgi(LimitBody(tiny_app(calls), 256 * 1024, timeout=30)) as url:
        yield url


def test_served_a_declared_200_mb_body_is_refused_before_a_byte_is_sent(
    served_body_limit: str, calls: Calls
) -> None:
    sock = connect(served_body_limit, timeout=5)
    with sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 200000000\r\n\r\n"
        )
        # Not a byte of the body has been sent, and the answer is already here.
        response = read_response(sock)
        assert response is not None
        assert response.status == 413
        assert json.loads(response.body)["error"].startswith("The request body is 200,000,000")
        assert closed_by_server(sock)
    assert calls.requests == []
    assert calls.body_bytes == 0


def test_served_a_chunked_body_stops_being_read_at_the_limit(
    served_body_limit: str, calls: Calls
) -> None:
    chunk = b"x" * 16384
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    most = 8 * 1024 * 1024  # the client gives up here: far past the limit
    sent = 0
    sock = connect(served_body_limit, timeout=5)
    with sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        while sent < most and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            time.sleep(0.002)  # a slow sender: the answer must not wait for its end
        response = read_response(sock)
    assert response is not None, f"no answer after {sent:,} bytes sent"
    assert response.status == 413
    assert sent < most
    assert 0 < calls.body_bytes <= 256 * 1024


def test_served_a_slow_body_is_refused_and_its_connection_closed(calls: Calls) -> None:
    with serve_asgi(LimitBody(tiny_app(calls), LIMIT, timeout=0.3)) as url:
        sock = connect(url, timeout=5)
        with sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
            sock.sendall(b"x" * 10)
            started = time.monotonic()
            response = read_response(sock)
            assert response is not None
            assert response.status == 408
            assert time.monotonic() - started < 3
            assert closed_by_server(sock)


# --- LimitStreams ---------------------------------------------------------------------------


async def test_streams_beyond_the_limit_per_address_are_refused() -> None:
    release = asyncio.Event()

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await PlainTextResponse("ended")(scope, receive, send)

    limit = LimitStreams(stream, limit=2)

    async def open_stream(address: str, path: str = "/answers/1/stream") -> Reply:
        reply = Reply()
        await limit(http_scope(path=path, client_address=address), no_body, reply.send)
        return reply

    held = [asyncio.create_task(open_stream("10.0.0.1")) for _ in range(2)]
    other = asyncio.create_task(open_stream("10.0.0.2"))
    plain = asyncio.create_task(open_stream("10.0.0.1", path="/thing"))
    await asyncio.sleep(0.05)
    assert limit.open == {"10.0.0.1": 2, "10.0.0.2": 1}

    refused = await asyncio.wait_for(open_stream("10.0.0.1"), 1)
    assert refused.status == 429
    assert refused.headers["retry-after"] == str(security.STREAMS_RETRY_AFTER_SECONDS)
    assert "DUET_MAX_STREAMS_PER_CLIENT" in error_of(refused)

    release.set()
    replies = await asyncio.gather(*held, other, plain)
    assert [reply.status for reply in replies] == [200, 200, 200, 200]
    assert limit.open == {}
    assert (await open_stream("10.0.0.1")).status == 200


async def test_a_stream_that_fails_frees_its_place() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the stream broke")

    limit = LimitStreams(failing, limit=1)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await limit(http_scope(path="/answers/1/stream"), no_body, Reply().send)
    assert limit.open == {}


# --- all of them together -------------------------------------------------------------------


async def test_the_layers_in_order_keep_a_same_origin_page_working(
    calls: Calls, static_dir: Path
) -> None:
    settings = Settings(max_body_bytes=LIMIT)
    app: ASGIApp = tiny_app(calls, static_dir)
    for layer in reversed(security.middleware(settings)):
        app = layer.cls(app, *layer.args, **layer.kwargs)
    htmx = {"HX-Request": "true", "Sec-Fetch-Site": "same-origin", "Origin": BASE_URL}
    async with client(app) as http:
        page = await http.get("/static/duet.css")
        posted = await http.post("/echo", headers=htmx, content=b"x" * 10)
        stream = await http.get("/answers/1/stream", headers={"Sec-Fetch-Site": "same-origin"})
        forged = await http.post("/echo", headers={"Origin": "http://evil.example"})
        too_big = await http.post("/echo", headers=htmx, content=b"x" * (LIMIT + 1))
    assert [r.status_code for r in (page, posted, stream, forged, too_big)] == [
        200,
        200,
        200,
        403,
        413,
    ]
    for response in (page, posted, stream, forged, too_big):
        assert_security_headers(response.headers)
    assert too_big.headers["hx-retarget"] == "#flash"
