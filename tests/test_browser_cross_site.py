"""Another site cannot drive Duet through the user's browser (issue 11), shown in Chromium.

Duet runs at http://127.0.0.1:PORT; the attacker's pages at http://localhost:OTHER, another
site as the browser sees it, both on this machine as in the issue's probe. For every
state-changing route of the route table the attacker's page auto-submits a form and sends a
fetch (`no-cors` for POST, as the probe did; a CORS request for other methods). Every one of
them that reaches Duet is answered 403, and the database is exactly as it was. The same page
cannot show Duet in a frame either.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from app_server import serve_asgi
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.settings import Settings
from duet.store import conversations
from duet.store.db import connect
from duet.store.messages import (
    AnswerRecord,
    add_user_message,
    save_assistant,
    start_assistant_message,
)
from duet.store.users import LOCAL_USER_ID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from test_request_path import example_path, route_table
from test_views import VALID_FORM

if TYPE_CHECKING:
    from playwright.async_api import Page
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# Fields any state-changing route would take, so that only Duet's check stands in the way.
FORM = {**VALID_FORM, "title": "renamed by another site", "conversation_id": "1"}


@dataclass
class Served:
    url: str
    database: Path
    # (method, path, status) of every request Duet answered, as it answered it.
    answered: list[tuple[str, str, int]] = field(default_factory=list)


def recording(app: ASGIApp, answered: list[tuple[str, str, int]]) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await app(scope, receive, noting if scope["type"] == "http" else send)

    return wrapped


@pytest.fixture
def duet(tmp_path: Path) -> Iterator[Served]:
    port = closed_port()
    engines: dict[str, Any] = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    database = tmp_path / "duet.sqlite3"
    answered: list[tuple[str, str, int]] = []
    app = create_app(Settings(), engines=engines, database=database)
    with serve_asgi(recording(app, answered)) as url:
        served = Served(url, database, answered)
        seed(served)
        yield served


def seed(served: Served) -> None:
    """Conversation 1 with a question (message 1) and its finished answer (message 2)."""
    db = connect(served.database)
    try:
        conversation = conversations.create_conversation(db, LOCAL_USER_ID, "Mine", "")
        add_user_message(db, conversation.id, "A question of my own")
        answer = start_assistant_message(
            db, conversation.id, engine="vllm", model="m", thinking=False, parameters={}
        )
        save_assistant(db, answer.id, AnswerRecord("complete", content="An answer"))
    finally:
        db.close()


def snapshot(served: Served) -> list[str]:
    db = connect(served.database)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def state_changing_routes() -> list[tuple[str, str]]:
    app = create_app(Settings(), engines={}, database=":memory:")
    found = []
    for route in route_table(app.router.routes):
        for method in sorted(getattr(route, "methods", None) or []):
            if method not in ("GET", "HEAD", "OPTIONS"):
                found.append((method, example_path(route.path)))  # type: ignore[attr-defined]
    assert ("POST", "/chat/send") in found
    return found


def attacker_site() -> Starlette:
    """The pages a site the user merely visits could serve. No CSP here: inline script runs."""

    async def form(request: Request) -> HTMLResponse:
        action = html.escape(request.query_params["action"])
        inputs = "".join(
            f'<input name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in FORM.items()
        )
        return HTMLResponse(
            f'<form method="post" action="{action}">{inputs}</form>'
            "<script>document.forms[0].submit()</script>"
        )

    async def fetches(request: Request) -> HTMLResponse:
        targets = json.loads(request.query_params["targets"])
        script = f"""
        const body = new URLSearchParams({json.dumps(FORM)});
        window.sent = Promise.allSettled({json.dumps(targets)}.map(([method, url]) =>
          fetch(url, {{method, body, mode: method === "POST" ? "no-cors" : "cors",
                      credentials: "include"}})));
        window.sent.then(() => {{ window.done = true; }});
        """
        return HTMLResponse(f"<script>{script}</script>")

    async def frame(request: Request) -> HTMLResponse:
        src = html.escape(request.query_params["src"])
        return HTMLResponse(f'<iframe src="{src}" width="800" height="600"></iframe>')

    return Starlette(
        routes=[Route("/form", form), Route("/fetches", fetches), Route("/frame", frame)]
    )


@pytest.fixture
def attacker() -> Iterator[str]:
    with serve_asgi(attacker_site()) as url:
        # The same server under another name: to the browser, another site than 127.0.0.1.
        yield url.replace("127.0.0.1", "localhost")


async def test_cross_site_forms_change_nothing(page: Page, duet: Served, attacker: str) -> None:
    before = snapshot(duet)
    posts = [path for method, path in state_changing_routes() if method == "POST"]
    for path in posts:
        target = duet.url + path
        async with page.expect_response(target) as answer:
            await page.goto(f"{attacker}/form?action={quote(target, safe='')}")
        assert (await answer.value).status == 403, path
    assert [a for a in duet.answered if a[0] == "POST"] == [("POST", p, 403) for p in posts]
    assert snapshot(duet) == before


async def test_cross_site_fetches_change_nothing(page: Page, duet: Served, attacker: str) -> None:
    before = snapshot(duet)
    routes = state_changing_routes()
    targets = json.dumps([[method, duet.url + path] for method, path in routes])
    await page.goto(f"{attacker}/fetches?targets={quote(targets, safe='')}")
    await page.wait_for_function("() => window.done === true")
    # Every request that reached Duet was refused. A CORS request with another method than
    # POST may never leave the browser (its preflight gets no CORS answer): that is fine too.
    reached = [a for a in duet.answered if a[0] not in ("GET", "OPTIONS")]
    assert ("POST", "/chat/send", 403) in reached
    assert all(status == 403 for _, _, status in reached), reached
    assert snapshot(duet) == before


async def test_another_site_cannot_frame_duet(page: Page, duet: Served, attacker: str) -> None:
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text))
    await page.goto(f"{attacker}/frame?src={quote(duet.url + '/', safe='')}")
    await page.wait_for_timeout(500)
    framed = [frame for frame in page.frames if frame != page.main_frame]
    assert framed, "the attacker's page has no frame"
    for child in framed:
        # A frame the browser refused to show holds its error page, not Duet's.
        assert "site-nav" not in await child.content()
    assert any("frame-ancestors" in text for text in refusals), refusals
