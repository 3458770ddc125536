"""An expired session does not lose the message being typed (issue 12's acceptance), in
headless Chromium against the real engines, in accounts mode.

A send that finds the session gone is answered with htmx's HX-Redirect to /signin; the page
unloads, so only what the page kept outside itself survives: duet.js keeps the composer's text
in sessionStorage per page until a send succeeds. The session "expires" by deleting its row,
which is what the idle and absolute limits come to: the cookie then names no session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_asgi
from chat_page import FRANCE, open_chat, send, wait_for_status
from duet.app import create_app
from duet.auth.passwords import HASHER
from duet.engines.base import Engine
from duet.settings import Settings
from duet.store import conversations, open_database, users
from duet.store.db import connect

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

NAME, PASSWORD = "ada", "correct horse battery"
DRAFT = "A second question, typed while the session ran out:\nwhat is 2 + 2?"


@pytest.fixture
def app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    database = tmp_path / "duet.sqlite3"
    db = open_database(database)
    try:
        users.create_user(db, NAME, HASHER.hash(PASSWORD), "user")
    finally:
        db.close()
    served = create_app(Settings(mode="accounts"), engines=engines, database=database)
    with serve_asgi(served) as url:
        yield RunningApp(url, database)


def query(app: RunningApp, sql: str) -> list[tuple[object, ...]]:
    db = connect(app.database)
    try:
        return [tuple(row) for row in db.execute(sql).fetchall()]
    finally:
        db.close()


async def drafts(page: Page) -> list[str]:
    """The drafts this tab keeps (htmx keeps its own things in sessionStorage too)."""
    keys: list[str] = await page.evaluate("() => Object.keys(sessionStorage)")
    return [key for key in keys if key.startswith("duet:draft:")]


async def sign_in(page: Page) -> None:
    await page.fill("input[name=name]", NAME)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")


async def test_the_message_being_typed_survives_an_expired_session(
    page: Page, app: RunningApp
) -> None:
    problems = await open_chat(page, app)  # sent to sign in first, and back
    assert "/signin" in page.url
    await sign_in(page)
    await page.wait_for_url(app.url + "/")
    await page.wait_for_function("() => window.htmx !== undefined")

    # A send that succeeds leaves no draft behind.
    answer_id = await send(page, FRANCE, "ollama", thinking=False)
    await wait_for_status(page, answer_id, "complete")
    await page.wait_for_url(re.compile(r"/c/\d+$"))
    conversation_url = page.url
    assert await page.input_value("#content") == ""
    assert await drafts(page) == []

    # Typed, then the session runs out before Send is pressed.
    await page.locator("#content").press_sequentially(DRAFT)
    assert query(app, "DELETE FROM sessions RETURNING id")
    await page.click("button.send")
    await page.wait_for_url(re.compile(r"/signin\?next=%2Fc%2F\d+$"))
    assert query(app, "SELECT count(*) FROM messages WHERE role = 'user'") == [(1,)]

    await sign_in(page)
    await page.wait_for_url(conversation_url)
    await page.wait_for_function("() => window.htmx !== undefined")
    assert await page.input_value("#content") == DRAFT

    # Sent now, it goes through, and the box and the draft are cleared.
    await page.click("button.send")
    await page.wait_for_function(
        "() => document.querySelectorAll('#messages article.assistant').length === 2"
    )
    assert await page.input_value("#content") == ""
    stored = query(app, "SELECT content FROM messages WHERE role = 'user' ORDER BY id")
    assert stored == [(FRANCE,), (DRAFT,)]
    await page.reload()
    assert await page.input_value("#content") == ""
    # The refused send is the one error expected: Chromium logs every answer of 400 or more.
    refused = [problem for problem in problems if "status of 401 (Unauthorized)" in problem]
    assert len(refused) == 1, problems
    assert [problem for problem in problems if problem not in refused] == []


async def test_drafts_are_kept_per_conversation_and_forgotten_on_sign_out(
    page: Page, app: RunningApp
) -> None:
    db = connect(app.database)
    try:
        user = users.find_user(db, NAME)
        assert user is not None
        earlier = conversations.create_conversation(db, user.id, "Earlier chat")
    finally:
        db.close()
    earlier_url = f"{app.url}/c/{earlier.id}"
    problems = await open_chat(page, app)
    await sign_in(page)
    await page.wait_for_url(app.url + "/")
    await page.locator("#content").press_sequentially(DRAFT)

    # Each conversation's box has its own draft, found again on coming back to it.
    await page.goto(earlier_url)
    assert await page.input_value("#content") == ""
    await page.locator("#content").press_sequentially("for the earlier chat")
    await page.goto(app.url + "/")
    assert await page.input_value("#content") == DRAFT
    await page.goto(earlier_url)
    assert await page.input_value("#content") == "for the earlier chat"

    # Signing out (a form to /signout, as on the waiting page) forgets them all: the next
    # person at this tab must not find them.
    await page.evaluate(
        """() => {
          const form = document.createElement("form");
          form.method = "post";
          form.action = "/signout";
          document.body.append(form);
          form.requestSubmit();
        }"""
    )
    await page.wait_for_url(re.compile(r"/signin$"))
    assert await drafts(page) == []
    await sign_in(page)
    await page.wait_for_url(app.url + "/")
    assert await page.input_value("#content") == ""
    assert problems == [], problems
