"""Team mode as people use it (issue 12's browser acceptance), in headless Chromium against the
real engines, with the app in accounts mode: the first admin made through the one-time setup
link; a second person signs up, waits, is approved and chats with both engines; another user
cannot open, stream, stop or export someone's conversation by its URL; a share link shows a
conversation read-only until its owner revokes it; signing out ends the session; repeated wrong
passwords are throttled with a message saying how long to wait.

Each person is a browser context of their own (their own cookies). Screenshots of the sign-in,
admin and shared pages at a desktop and a phone size go to test-artifacts, for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_asgi
from browser import screenshot_dir
from chat_page import FRANCE, STORY, send, stored, wait_for_status, watch_problems
from duet.app import create_app
from duet.auth.passwords import HASHER
from duet.engines.base import Engine
from duet.settings import Settings
from duet.store import conversations, open_database, users
from duet.store.db import connect
from duet.views.auth import new_setup_token

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Response, SetCookieParam

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

ADMIN, BEA = "ada", "bea"
EARLIER = "Earlier chat"  # a conversation's title
PASSWORD = "correct horse battery"
SIGNIN_ATTEMPTS = 3
# A loaded two-core machine hashes passwords and renders pages slowly: a ceiling, not a pace.
WAIT_MS = 30_000
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@contextmanager
def team_app(
    engines: Mapping[str, Engine], database: Path, *people: tuple[str, str]
) -> Iterator[RunningApp]:
    """The app in accounts mode over a new database holding these (name, role) accounts."""
    db = open_database(database)
    try:
        for name, role in people:
            users.create_user(db, name, HASHER.hash(PASSWORD), role)  # type: ignore[arg-type]
    finally:
        db.close()
    settings = Settings(mode="accounts", signin_attempts=SIGNIN_ATTEMPTS)
    with serve_asgi(create_app(settings, engines=engines, database=database)) as url:
        yield RunningApp(url, database)


@pytest.fixture
def empty_app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    with team_app(engines, tmp_path / "duet.sqlite3") as app:
        yield app


@pytest.fixture
def app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    with team_app(engines, tmp_path / "duet.sqlite3", (ADMIN, "user"), (BEA, "user")) as app:
        yield app


@asynccontextmanager
async def person(chromium: Browser) -> AsyncIterator[tuple[Page, list[str]]]:
    """Another person at another browser: a context of their own, and its page's problems."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        yield page, await watch_problems(page)
    finally:
        await context.close()


async def watched(page: Page) -> list[str]:
    page.context.set_default_timeout(WAIT_MS)
    return await watch_problems(page)


def query(app: RunningApp, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    db = connect(app.database)
    try:
        return [tuple(row) for row in db.execute(sql, parameters).fetchall()]
    finally:
        db.close()


def unexpected(problems: list[str], *statuses: int) -> list[str]:
    """The problems other than Chromium's report of an answer with one of these statuses (it
    logs every answer of 400 or more, the refusals a test provokes among them)."""
    refusals = tuple(f"status of {status} " for status in statuses)
    return [problem for problem in problems if not any(text in problem for text in refusals)]


async def fill_account_form(page: Page, name: str, *, repeat: bool = False) -> None:
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    if repeat:
        await page.fill("input[name=repeat]", PASSWORD)
    await page.click("main button[type=submit]")


async def sign_in(page: Page, app: RunningApp, name: str, password: str = PASSWORD) -> None:
    await page.goto(app.url + "/signin")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("main button[type=submit]")


async def chat_once(page: Page, app: RunningApp, engine: str) -> int:
    """Ask FRANCE with `engine` on the open chat page; the id of the finished answer."""
    await page.wait_for_function("() => window.htmx !== undefined")
    answer_id = await send(page, FRANCE, engine, thinking=False, max_tokens=64)
    await wait_for_status(page, answer_id, "complete")
    assert stored(app, answer_id).content.strip()
    return answer_id


async def shoot(page: Page, name: str) -> None:
    """The page at each size, into test-artifacts, for a person to look at."""
    folder = screenshot_dir() / "team"
    folder.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in SIZES.items():
        await page.set_viewport_size({"width": width, "height": height})
        await page.screenshot(path=str(folder / f"{name}-{size}.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 800})


async def fetch_status(page: Page, path: str, method: str = "GET", **headers: str) -> int:
    """The status a request from the page's own scripts gets (same origin, its cookie)."""
    status: int = await page.evaluate(
        """async ([path, method, headers]) =>
             (await fetch(path, { method, headers, cache: "no-store" })).status""",
        [path, method, headers],
    )
    return status


async def test_the_first_admin_approves_a_signup_who_chats_with_both_engines(
    page: Page, chromium: Browser, empty_app: RunningApp
) -> None:
    app = empty_app
    db = connect(app.database)
    try:
        token = new_setup_token(db)  # what the server printed to its log at start
    finally:
        db.close()
    admin_problems = await watched(page)

    # The admin opens the setup link and makes the first account: signed in, at the chat.
    await page.goto(f"{app.url}/setup?token={token}")
    await fill_account_form(page, ADMIN, repeat=True)
    await page.wait_for_url(app.url + "/")
    assert await page.locator(".account-nav a[href='/admin']").count() == 1
    assert query(app, "SELECT name, role FROM users") == [(ADMIN, "admin")]
    used = await page.goto(f"{app.url}/setup?token={token}")
    assert used is not None and used.status == 404  # the link works once

    # The admin opens signing up.
    await page.goto(app.url + "/admin")
    await page.check("input[name=policy][value=open]")
    await page.click("section[aria-labelledby=signup-heading] button[type=submit]")
    await page.locator(".notice", has_text="Signing up is open").wait_for()

    async with person(chromium) as (bea, bea_problems):
        await bea.goto(app.url + "/signup")
        await fill_account_form(bea, BEA, repeat=True)
        await bea.wait_for_url(app.url + "/waiting")
        await bea.locator("h1", has_text="Waiting for approval").wait_for()
        await bea.goto(app.url + "/")  # nothing else to see until approved
        assert re.fullmatch(re.escape(app.url) + r"/waiting(\?next=%2F)?", bea.url), bea.url

        await page.reload()
        await page.locator(f"#pending tr[data-user={BEA}] button", has_text="Approve").click()
        await page.locator(".notice", has_text=f"{BEA} is approved").wait_for()
        assert query(app, "SELECT role FROM users WHERE name = ?", BEA) == [("user",)]

        await bea.reload()
        await bea.wait_for_url(app.url + "/")
        answers = [await chat_once(bea, app, engine) for engine in ("vllm", "ollama")]
        await bea.wait_for_url(re.compile(r"/c/\d+$"))
        owners = query(
            app,
            "SELECT m.engine, u.name FROM messages m JOIN conversations c"
            " ON c.id = m.conversation_id JOIN users u ON u.id = c.user_id"
            f" WHERE m.id IN ({', '.join('?' * len(answers))}) ORDER BY m.id",
            *answers,
        )
        assert owners == [("vllm", BEA), ("ollama", BEA)]
        assert unexpected(bea_problems) == [], bea_problems

    # The admin sees the usage as counts per person and engine, never the text.
    await page.goto(app.url + "/admin")
    usage = page.locator("#usage tbody tr", has_text=BEA)
    assert sorted(await usage.locator("td:nth-child(3)").all_inner_texts()) == ["ollama", "vllm"]
    assert FRANCE not in await page.content()
    await shoot(page, "admin")
    assert unexpected(admin_problems, 404) == [], admin_problems


async def test_another_user_cannot_open_stream_stop_or_export_a_conversation(
    page: Page, chromium: Browser, app: RunningApp
) -> None:
    problems = await watched(page)
    await sign_in(page, app, ADMIN)
    await page.wait_for_url(app.url + "/")
    answer_id = await chat_once(page, app, "ollama")
    await page.wait_for_url(re.compile(r"/c/\d+$"))
    conversation_id = int(page.url.rsplit("/", 1)[1])
    answer = stored(app, answer_id).content
    before = (
        query(app, "SELECT * FROM messages ORDER BY id"),
        query(app, "SELECT * FROM conversations ORDER BY id"),
    )

    async with person(chromium) as (bea, bea_problems):
        await sign_in(bea, app, BEA)
        await bea.wait_for_url(app.url + "/")
        for path in (
            f"/c/{conversation_id}",
            f"/messages/{answer_id}",
            f"/conversations/{conversation_id}/export.md",
            f"/conversations/{conversation_id}/export.json",
        ):
            opened: Response | None = await bea.goto(app.url + path)
            assert opened is not None and opened.status == 404, path
            seen = await bea.content()
            assert FRANCE not in seen and answer.strip() not in seen, path
        assert await fetch_status(bea, f"/messages/{answer_id}/stream") == 404
        reattach = await fetch_status(
            bea, f"/messages/{answer_id}/stream", **{"Last-Event-ID": "0"}
        )
        assert reattach == 404
        assert await fetch_status(bea, f"/messages/{answer_id}/stop", "POST") == 404
        assert await fetch_status(bea, f"/messages/{answer_id}/regenerate", "POST") == 404
        # B's own history does not list it either.
        await bea.goto(app.url + "/")
        assert FRANCE not in await bea.content()
        after = (
            query(app, "SELECT * FROM messages ORDER BY id"),
            query(app, "SELECT * FROM conversations ORDER BY id"),
        )
        assert after == before

        # Nor can B stop an answer of A's while it streams: it goes on to its end.
        streaming_id = await send(page, STORY, "ollama", thinking=False, max_tokens=400)
        assert await fetch_status(bea, f"/messages/{streaming_id}/stop", "POST") == 404
        assert stored(app, streaming_id).status == "streaming"  # refused, not merely too late
        await wait_for_status(page, streaming_id, "complete")
        assert unexpected(bea_problems, 404) == [], bea_problems
    assert unexpected(problems) == [], problems


async def test_a_share_link_is_read_only_and_dies_when_revoked(
    page: Page, chromium: Browser, app: RunningApp
) -> None:
    problems = await watched(page)
    await sign_in(page, app, ADMIN)
    await page.wait_for_url(app.url + "/")
    answer_id = await chat_once(page, app, "ollama")
    await page.wait_for_url(re.compile(r"/c/\d+$"))
    answer = stored(app, answer_id).content.strip()

    await page.click("#share-control button.share")
    link = await page.locator("#share-control .share-link input").input_value()
    assert re.fullmatch(re.escape(app.url) + r"/shared/[\w-]{20,}", link), link

    async with person(chromium) as (bea, bea_problems):
        # Not signed in, the link leads to signing in first.
        await bea.goto(link)
        assert "/signin" in bea.url
        await bea.fill("input[name=name]", BEA)
        await bea.fill("input[name=password]", PASSWORD)
        await bea.click("main button[type=submit]")
        await bea.wait_for_url(link)
        shared = bea.locator("main.shared")
        await shared.locator(".shared-by", has_text=f"Shared read-only by {ADMIN}").wait_for()
        assert FRANCE in await shared.inner_text()
        assert answer.split()[0] in await shared.inner_text()
        controls = shared.locator("form, button, textarea, select, input, [hx-post], [hx-get]")
        assert await controls.count() == 0, await controls.evaluate_all(
            "nodes => nodes.map(node => node.outerHTML)"
        )
        assert await bea.locator("#content, [data-stream]").count() == 0
        await shoot(bea, "shared")

        await page.click("#share-control button.revoke")
        await page.locator("#share-control button.share").wait_for()
        gone = await bea.reload()
        assert gone is not None and gone.status == 404
        seen = await bea.content()
        assert FRANCE not in seen and answer not in seen
        assert unexpected(bea_problems, 404) == [], bea_problems
    assert unexpected(problems) == [], problems


async def sign_in_then_out(page: Page, app: RunningApp) -> tuple[str, list[SetCookieParam]]:
    """Sign in, open a conversation, and sign out with the page's button: the conversation's
    URL, and the session cookie as it was before signing out."""
    db = connect(app.database)
    try:
        user = users.find_user(db, BEA)
        assert user is not None
        earlier = conversations.create_conversation(db, user.id, EARLIER)
    finally:
        db.close()
    chat_url = f"{app.url}/c/{earlier.id}"
    await sign_in(page, app, BEA)
    await page.wait_for_url(app.url + "/")
    await page.goto(chat_url)
    await page.wait_for_function("() => window.htmx !== undefined")
    cookies = await page.context.cookies()
    assert [cookie["name"] for cookie in cookies] == ["duet_session"]
    await page.click(".account-nav form.signout button")
    await page.wait_for_url(re.compile(r"/signin$"))
    assert query(app, "SELECT count(*) FROM sessions") == [(0,)]
    return chat_url, [{"name": c["name"], "value": c["value"], "url": app.url} for c in cookies]


async def test_after_signing_out_the_old_session_no_longer_works(
    page: Page, chromium: Browser, app: RunningApp
) -> None:
    problems = await watched(page)
    chat_url, cookies = await sign_in_then_out(page, app)
    await page.goto(chat_url)
    await page.wait_for_url(re.compile(r"/signin\?next=%2Fc%2F\d+$"))
    assert EARLIER not in await page.content()

    # The old cookie, kept and sent again from another browser, names no session.
    async with person(chromium) as (thief, thief_problems):
        await thief.context.add_cookies(cookies)
        await thief.goto(chat_url)
        await thief.wait_for_url(re.compile(r"/signin\?next=%2Fc%2F\d+$"))
        assert EARLIER not in await thief.content()
        assert unexpected(thief_problems) == [], thief_problems
    assert unexpected(problems) == [], problems


async def test_going_back_after_signing_out_shows_nothing_of_the_session(
    page: Page, app: RunningApp
) -> None:
    await watched(page)
    await sign_in_then_out(page, app)
    await page.go_back()
    # Whatever Back shows, at once, must not be the signed-out person's conversation.
    await page.wait_for_load_state()
    assert EARLIER not in await page.content(), page.url
    await page.wait_for_url(re.compile(r"/signin\?next=%2Fc%2F\d+$"))


async def test_repeated_wrong_passwords_are_throttled_with_how_long_to_wait(
    page: Page, app: RunningApp
) -> None:
    problems = await watched(page)
    await page.goto(app.url + "/signin")
    await shoot(page, "signin")
    for _ in range(SIGNIN_ATTEMPTS):
        await sign_in(page, app, BEA, "not the password")
        await page.locator("main", has_text="That name and password do not match").wait_for()
    # Past the limit even the right password waits, and the page says for how long.
    await sign_in(page, app, BEA)
    await page.locator("main", has_text="Too many wrong passwords. Wait 5 minutes").wait_for()
    assert page.url == app.url + "/signin"
    assert await page.context.cookies() == []
    await shoot(page, "signin-throttled")
    assert unexpected(problems, 401, 429) == [], problems
