"""Pytest fixtures for browser tests, loaded from tests/conftest.py as a plugin.

`chromium` is one headless browser for the whole session (starting Chromium costs about a
second); `page` gives each test a fresh browser context, so cookies and storage never leak
between tests. When a test fails, its page is saved as a PNG under `screenshot_dir()` and the
path is added to the failure report.

Playwright's async API, not its sync one: between calls the sync API leaves its event loop
marked as running in the main thread, and every pytest-asyncio test after the first browser
test then fails ("Runner.run() cannot be called from a running event loop"). So browser tests
are `async def` tests that run in the session's event loop, where the browser lives:

    pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

A server under test runs in a thread or a subprocess on 127.0.0.1, never in that loop, so the
browser and the server do not pace each other.

`page.wait_for_function` is given a function ("() => ..."), never a bare expression: Playwright
evaluates an expression anew with eval at every poll, which the app's Content-Security-Policy
refuses, while a function is evaluated once and then called.

`sized_page` is `page` at each of the sizes the UI is checked at (`VIEWPORTS`: a desktop
window and a phone), one run of the test per size; `duet_app` serves the app with the
session's real engines and a fresh database, for tests that drive it through the browser.

Playwright is imported inside the fixtures, so test runs that select no browser test do not
need it installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from app_server import RunningApp, serve_app
from browser import INSTALL_HINT, find_chromium, launch_chromium, screenshot_dir, screenshot_name

if TYPE_CHECKING:
    from duet.engines.base import Engine
    from playwright.async_api import Browser, Page, ViewportSize

PAGE_TIMEOUT_MS = 10_000  # a loopback page that takes longer than this is a failure, not slowness

VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}

PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the test item, so the `page` fixture's teardown can tell
    # whether the test body failed.
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.fail(f"no Chromium found: {INSTALL_HINT}", pytrace=False)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(f"the playwright package is missing: {INSTALL_HINT}", pytrace=False)
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, executable)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(chromium: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    async for new_page in _page_at(chromium, request, VIEWPORTS["desktop"]):
        yield new_page


@pytest_asyncio.fixture(loop_scope="session", params=list(VIEWPORTS))
async def sized_page(chromium: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh page at one of `VIEWPORTS`; a test that takes it runs once per size."""
    async for new_page in _page_at(chromium, request, VIEWPORTS[request.param]):
        yield new_page


@pytest.fixture
def duet_app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    """The app with the session's real engines and a fresh SQLite file."""
    with serve_app(engines, tmp_path / "duet.sqlite3") as running:
        yield running


async def _page_at(
    chromium: Browser, request: pytest.FixtureRequest, viewport: ViewportSize
) -> AsyncIterator[Page]:
    context = await chromium.new_context(viewport=viewport)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    new_page = await context.new_page()
    try:
        yield new_page
    finally:
        reports = request.node.stash.get(PHASE_REPORTS, {})
        if any(report.failed for report in reports.values()):
            await _save_failure_screenshot(new_page, request.node)
        await context.close()


async def _save_failure_screenshot(failed_page: Page, item: pytest.Item) -> None:
    path = (screenshot_dir() / screenshot_name(item.nodeid)).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        await failed_page.screenshot(path=str(path), full_page=True)
    except Exception as error:  # a crashed page must not hide the test's own failure
        item.add_report_section("teardown", "screenshot", f"could not save {path}: {error}")
        return
    item.add_report_section("teardown", "screenshot", f"saved {path}")
