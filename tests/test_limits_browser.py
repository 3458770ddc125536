"""Limits in headless Chromium, in accounts mode: a send over a limit shows the refusal in the
page and the message typed stays in the composer; the admin page's limits and tokens chart load
with no Content-Security-Policy violation. No engine is needed: the refused send never reaches
one, and the chart is drawn from stored usage."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_asgi
from chat_page import CSP_RECORDER, watch_problems
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.auth.sessions import COOKIE, iso, token_hash
from duet.limits import admit
from duet.settings import Settings
from duet.store import api_usage, open_database, sessions, user_limits, users
from duet.store.user_limits import LimitValues

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TYPED = "A question typed with care,\nover two lines."


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RunningApp]:
    database = tmp_path / "duet.sqlite3"
    port = closed_port()
    engines = {"vllm": DownEngine("vllm", "vLLM", port)}
    served = create_app(Settings(mode="accounts"), engines=engines, database=database)  # type: ignore[arg-type]
    with serve_asgi(served) as url:
        yield RunningApp(url, database)


def signed_in(app: RunningApp, name: str, role: users.Role) -> tuple[int, str]:
    """An account with a session; its id and the session's cookie value."""
    db = open_database(app.database)
    try:
        user = users.create_user(db, name, "not-checked", role)
        token = secrets.token_urlsafe(16)
        far = iso(datetime.now(UTC) + timedelta(days=1))
        sessions.create_session(db, user.id, token_hash(token), far, "chromium", "127.0.0.1")
        return user.id, token
    finally:
        db.close()


async def open_as(page: Page, app: RunningApp, token: str, path: str) -> list[str]:
    problems = await watch_problems(page)
    await page.add_init_script(CSP_RECORDER)
    await page.context.add_cookies([{"name": COOKIE, "value": token, "url": app.url}])
    await page.goto(app.url + path)
    await page.wait_for_function("() => window.htmx !== undefined")
    return problems


async def test_a_send_over_the_limit_says_so_and_keeps_the_message(
    page: Page, app: RunningApp
) -> None:
    signed_in(app, "ada", "admin")
    bob, token = signed_in(app, "bob", "user")
    db = open_database(app.database)
    try:
        user_limits.set_override(db, bob, LimitValues(tokens_per_day=0))
    finally:
        db.close()
    problems = await open_as(page, app, token, "/")
    await page.fill("#content", TYPED)
    await page.click("button.send")
    flash = page.locator("#flash")
    await flash.get_by_text("Your account may not start answers").wait_for()
    assert "its limit is 0 tokens a day. An admin can change it." in await flash.inner_text()
    assert await page.input_value("#content") == TYPED
    assert await page.locator("#messages article").count() == 0
    # The refusal is the one error expected: Chromium and htmx each log an answer of 400 or more.
    assert [p for p in problems if "429" not in p] == [], problems


async def test_the_admin_page_shows_limits_and_the_chart_within_the_csp(
    page: Page, app: RunningApp
) -> None:
    ada, token = signed_in(app, "ada", "admin")
    db = open_database(app.database)
    try:
        now = datetime.now(UTC)
        for days_ago, tokens in ((0, 120), (1, 300), (3, 80)):
            at = now - timedelta(days=days_ago)
            request_id = admit(db, ada, key_id=None, engine="vllm", model="q", now=at)
            api_usage.finish_request(db, request_id, api_usage.Outcome("completed", 5, tokens))
    finally:
        db.close()
    problems = await open_as(page, app, token, "/admin")
    chart = page.locator("#usage-chart svg").first
    await chart.wait_for()
    box = await chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    assert await page.locator("#usage-chart rect[id^=bar-]").count() == 3
    # A form of the limits works from the page: htmx swaps the panel in.
    await page.fill("#default-limits input[name=max_concurrent]", "4")
    await page.click("#default-limits button[type=submit]")
    await page.get_by_text("The default limits are answers at once 4").wait_for()
    assert await page.input_value("#default-limits input[name=max_concurrent]") == "4"
    assert problems == []
