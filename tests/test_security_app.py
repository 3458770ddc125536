"""duet.security in the real app (issue 11): over every route of the route table, a foreign
Host is refused, a cross-site request changes nothing, every response carries the security
headers, and a body over the limit stores nothing and is refused before it is read.

Until `create_app` installs duet.security's middleware these tests skip, saying which layers
are missing (found by walking the app's built middleware stack). One test runs regardless:
the stream limit knows streams by their path, and it holds every event-stream route to that.
"""

from __future__ import annotations

import json
import sqlite3
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_server import serve_asgi
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.security import (
    CheckCrossSite,
    CheckHost,
    LimitBody,
    LimitStreams,
    SecurityHeaders,
    is_event_stream,
)
from duet.settings import Settings
from duet.sse import EventStreamResponse
from duet.store import conversations, messages
from duet.store.users import LOCAL_USER_ID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from raw_http import connect, read_response
from starlette.responses import StreamingResponse
from starlette.routing import Mount, Route
from test_request_path import example_path, route_table
from test_views import VALID_FORM

STREAMS = (StreamingResponse, EventStreamResponse)
PROTECTIONS = (SecurityHeaders, CheckHost, CheckCrossSite, LimitBody, LimitStreams)
BODY_LIMIT = 64 * 1024
BASE_URL = "http://127.0.0.1:8080"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": BASE_URL}
HX = {"HX-Request": "true", **SAME_ORIGIN}


# How a page on another origin gets the browser to send a request, as Chromium sends it.
FORGERIES = {
    "auto-submitted form": {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
        "Origin": "http://evil.example",
    },
    "no-cors fetch": {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "no-cors",
        "Origin": "http://evil.example",
    },
    "page on another port of this host": {
        "Sec-Fetch-Site": "same-site",
        "Origin": "http://127.0.0.1:3000",
    },
    "browser without Sec-Fetch-Site": {"Origin": "http://evil.example"},
    "sandboxed frame": {"Sec-Fetch-Site": "cross-site", "Origin": "null"},
}


def installed(app: FastAPI) -> set[type]:
    """The middleware classes of the app's built stack, from the outside in to the router."""
    found: set[type] = set()
    layer: Any = app.build_middleware_stack()
    while layer is not None and layer is not app.router:
        found.add(type(layer))
        layer = getattr(layer, "app", None)
    return found


def build_app(database: Path) -> FastAPI:
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    return create_app(Settings(max_body_bytes=BODY_LIMIT), engines=engines, database=database)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    built = build_app(tmp_path / "duet.sqlite3")
    missing = [layer.__name__ for layer in PROTECTIONS if layer not in installed(built)]
    if missing:
        pytest.skip(f"create_app does not install {', '.join(missing)} (duet.security) yet")
    return built


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def db(client: TestClient) -> sqlite3.Connection:
    db: sqlite3.Connection = client.app.state.db  # type: ignore[attr-defined]
    conversation = conversations.create_conversation(db, LOCAL_USER_ID, "Tell me about cats")
    messages.add_user_message(db, conversation.id, "Tell me about cats")
    return db


def snapshot(db: sqlite3.Connection) -> list[str]:
    return list(db.iterdump())


def every_request() -> Iterator[tuple[str, str, Route | Mount]]:
    """(method, example path, route) for every method of every route in the route table."""
    app = build_app(Path(":memory:"))
    for route in route_table(app.router.routes):
        if isinstance(route, Mount):
            yield "GET", example_path(route.path) + "/duet.css", route
            continue
        assert isinstance(route, Route), f"an unusual route: {route!r}"
        for method in sorted(route.methods or ["GET"]):
            yield method, example_path(route.path), route


def state_changing_requests() -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path, _ in every_request()
        if method not in ("GET", "HEAD", "OPTIONS")
    ]


# A form each state-changing route would take, so that only the check stands in its way.
FORM = {**VALID_FORM, "title": "renamed by another site", "conversation_id": "1"}


@pytest.mark.parametrize("host", ["evil.example:8091", "evil.example", "127.0.0.1.evil.example"])
def test_a_foreign_host_is_refused_on_every_route(
    client: TestClient, db: sqlite3.Connection, host: str
) -> None:
    before = snapshot(db)
    for method, path, _ in every_request():
        response = client.request(method, path, headers={"Host": host, **SAME_ORIGIN}, data=FORM)
        assert response.status_code == 400, f"{method} {path}: {response.status_code}"
    assert snapshot(db) == before


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_cross_site_request_changes_nothing_on_any_state_changing_route(
    client: TestClient, db: sqlite3.Connection, forgery: str
) -> None:
    before = snapshot(db)
    requests = state_changing_requests()
    assert any(path == "/chat/send" for _, path in requests)
    for method, path in requests:
        headers = FORGERIES[forgery]
        response = client.request(method, path, headers=headers, data=FORM)
        assert response.status_code == 403, f"{method} {path}: {response.status_code}"
    assert snapshot(db) == before


def test_the_same_origin_page_and_htmx_keep_working(
    client: TestClient, db: sqlite3.Connection
) -> None:
    assert client.get("/", headers={"Sec-Fetch-Site": "none"}).status_code == 200
    renamed = client.post("/conversations/1/rename", data={"title": "Cats"}, headers=HX)
    assert renamed.status_code == 200
    assert conversations.get_conversation(db, LOCAL_USER_ID, 1).title == "Cats"  # type: ignore[union-attr]
    sent = client.post("/chat/send", data=VALID_FORM, headers=HX)
    assert sent.status_code == 200
    # A script (no browser headers) is no forgery.
    assert client.post("/conversations/1/rename", data={"title": "Dogs"}).status_code == 200


def test_every_kind_of_response_carries_the_security_headers(
    client: TestClient, db: sqlite3.Connection
) -> None:
    answer = messages.start_assistant_message(
        db, 1, engine="vllm", model="m", thinking=False, parameters={}
    )
    responses = {
        "page": client.get("/"),
        "fragment": client.get("/conversations", headers={"HX-Request": "true"}),
        "static file": client.get("/static/duet.css"),
        "not found": client.get("/no/such/page", headers={"Accept": "text/html"}),
        "user error": client.post("/conversations/1/rename", data={"title": ""}, headers=HX),
        "export": client.get("/conversations/1/export.md"),
        "foreign host": client.get("/", headers={"Host": "evil.example"}),
        "forgery": client.post("/chat/send", headers=FORGERIES["no-cors fetch"]),
    }
    with client.stream("GET", f"/messages/{answer.id}/stream") as stream:
        responses["event stream"] = stream
    for kind, response in responses.items():
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, kind
        assert response.headers.get("x-frame-options") == "DENY", kind
        assert response.headers.get("x-content-type-options") == "nosniff", kind


def test_a_body_over_the_limit_is_refused_and_stores_nothing(
    client: TestClient, db: sqlite3.Connection
) -> None:
    before = snapshot(db)
    form = {**VALID_FORM, "content": "x" * (BODY_LIMIT + 1)}
    response = client.post("/chat/send", data=form, headers=HX)
    assert response.status_code == 413
    assert response.headers["HX-Retarget"] == "#flash"
    assert "DUET_MAX_BODY_BYTES" in response.text
    assert snapshot(db) == before


def test_served_a_200_mb_message_is_refused_before_it_is_sent(app: FastAPI) -> None:
    with serve_asgi(app) as url, connect(url, timeout=5) as sock:
        sock.sendall(
            b"POST /chat/send HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 200000000\r\n\r\n"
        )
        response = read_response(sock)
        assert response is not None
        assert response.status == 413
        assert "200,000,000" in json.loads(response.body)["error"]


@pytest.fixture
def unchecked_client(tmp_path: Path) -> Iterator[TestClient]:
    """The app as create_app builds it, installed protections or not, with a finished answer
    stored as message 1 (its stream is a short event-stream response)."""
    app = build_app(tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as test_client:
        db = test_client.app.state.db  # type: ignore[attr-defined]
        conversation = conversations.create_conversation(db, LOCAL_USER_ID, "streams")
        answer = messages.start_assistant_message(
            db, conversation.id, engine="vllm", model="m", thinking=False, parameters={}
        )
        messages.save_assistant(db, answer.id, messages.AnswerRecord("complete", content="hi"))
        messages.add_user_message(db, conversation.id, "and then?")
        assert answer.id == 1
        yield test_client


def test_safe_methods_change_nothing_on_any_route(unchecked_client: TestClient) -> None:
    """CheckCrossSite lets GET, HEAD and OPTIONS through from anywhere: that is safe only while
    no route changes anything on them."""
    db = unchecked_client.app.state.db  # type: ignore[attr-defined]
    before = snapshot(db)
    for method, path, _ in every_request():
        if method in ("GET", "HEAD", "OPTIONS"):
            response = unchecked_client.request(method, path, headers=FORGERIES["no-cors fetch"])
            assert response.status_code < 500, f"{method} {path}: {response.status_code}"
    assert snapshot(db) == before


def test_every_event_stream_route_is_known_by_its_path(unchecked_client: TestClient) -> None:
    """LimitStreams counts a request as a stream by its path (duet.security.is_event_stream):
    a route that answered with a stream at another path would not be counted. Streams are found
    two ways: routes declared to return an event stream, and every GET route asked for id 1."""
    streams = set()
    for method, path, route in every_request():
        endpoint = getattr(route, "endpoint", None)
        returns = None if endpoint is None else typing.get_type_hints(endpoint).get("return")
        if isinstance(returns, type) and issubclass(returns, STREAMS):
            streams.add(path)
        if method == "GET":
            response = unchecked_client.get(path)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                streams.add(path)
    assert {"/messages/1/stream", "/compare/answers/1/stream"} <= streams
    for path in streams:
        assert is_event_stream({"type": "http", "path": path}), f"{path} is not counted"
