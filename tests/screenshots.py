"""Screenshots for the docs (docs/screenshots/): the chat page, the compare page after a run and
the runs page, each in light and dark, at a desktop size (1280x800) and a phone size (390x844):
`{page}-{scheme}.png` and `{page}-{scheme}-phone.png`.

    python tests/screenshots.py

Needs the engines running (`duet dev --no-ui`: vLLM on 8000, Ollama on 11434, serving the tiny
model; DUET_VLLM_URL / DUET_OLLAMA_URL / DUET_*_MODEL point elsewhere). It holds a real
conversation through the app, in headless Chromium, with a fresh database in a temporary
directory: a question answered with thinking on by vLLM (the reasoning block is opened for the
picture) and one answered by Ollama with a code block; then one prompt compared on vLLM and
Ollama at each size and scheme, which also fills the runs page. Not part of the test run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from app_server import RunningApp, serve_app
from browser import INSTALL_HINT, find_chromium, launch_chromium
from browser_fixtures import VIEWPORTS
from chat_page import CODE, FRANCE, open_chat, send, wait_for_status
from compare_page import run_compare
from duet.devstack import TINY_MODEL_NAME
from duet.engines import build_engines
from duet.settings import Settings

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

OUT_DIR = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SCHEMES = ("light", "dark")


def shot_path(name: str, scheme: str, size: str) -> Path:
    suffix = "" if size == "desktop" else f"-{size}"
    return OUT_DIR / f"{name}-{scheme}{suffix}.png"


@asynccontextmanager
async def docs_browser() -> AsyncIterator[Browser]:
    """Headless Chromium for the docs' screenshots (OUT_DIR made first), closed at the end."""
    from playwright.async_api import async_playwright

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit(f"no Chromium found: {INSTALL_HINT}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, chromium)
        try:
            yield browser
        finally:
            await browser.close()


async def take(app: RunningApp) -> None:
    async with docs_browser() as browser:
        context = await browser.new_context(viewport=VIEWPORTS["desktop"], color_scheme="light")
        page = await context.new_page()
        problems = await open_chat(page, app)
        first = await send(page, FRANCE, "vllm", thinking=True)
        await wait_for_status(page, first, "complete")
        second = await send(page, CODE, "ollama", thinking=False)
        await wait_for_status(page, second, "complete")
        conversation_url = page.url
        if problems:
            raise SystemExit(f"the page reported errors: {problems}")
        await context.close()

        for size, viewport in VIEWPORTS.items():
            for scheme in SCHEMES:
                context = await browser.new_context(viewport=viewport, color_scheme=scheme)
                page = await context.new_page()
                await chat(page, conversation_url, first, shot_path("chat", scheme, size))
                await compare_run(page, app, shot_path("compare", scheme, size))
                await runs(page, app, shot_path("runs", scheme, size))
                await context.close()


async def save(page: Page, path: Path, *, full_page: bool = False) -> None:
    await page.screenshot(path=str(path), full_page=full_page)
    print(f"wrote {path}")


async def chat(page: Page, conversation_url: str, answer_id: int, path: Path) -> None:
    """The conversation from its top (title and engine badges), the vLLM answer's reasoning
    open. The page opens at its latest message: scrolled up, it offers Jump to latest."""
    await page.goto(conversation_url)
    await page.wait_for_selector("#health .badge.up")  # health badges have loaded
    article = page.locator(f"#message-{answer_id}")
    await article.locator("details.reasoning summary").click()
    await page.evaluate("() => window.scrollTo(0, 0)")
    await page.wait_for_timeout(100)  # the scroll's handler shows or hides Jump to latest
    await save(page, path)


async def compare_run(page: Page, app: RunningApp, path: Path) -> None:
    """One prompt to vLLM and Ollama at once, photographed when the run is finished."""
    await run_compare(page, app.url, FRANCE, max_tokens=60)
    await page.wait_for_selector("#health .badge.up")
    await save(page, path, full_page=True)


async def runs(page: Page, app: RunningApp, path: Path) -> None:
    await page.goto(app.url + "/runs")
    await save(page, path)


def settings_from_env() -> Settings:
    """The engines the environment names, serving the tiny model unless DUET_*_MODEL say
    otherwise (the other screenshot scripts use it too)."""
    settings = Settings.from_env()
    return Settings(
        vllm_url=settings.vllm_url,
        ollama_url=settings.ollama_url,
        vllm_model=os.environ.get("DUET_VLLM_MODEL", TINY_MODEL_NAME),
        ollama_model=os.environ.get("DUET_OLLAMA_MODEL", TINY_MODEL_NAME),
    )


def shoot_with_engines(take: Callable[[RunningApp], Awaitable[None]]) -> int:
    """Run `take` against a Duet serving the configured engines, with a fresh database in a
    temporary directory: the body of every screenshot script."""
    engines = build_engines(settings_from_env())
    with (
        tempfile.TemporaryDirectory() as scratch,
        serve_app(engines, Path(scratch) / "duet.sqlite3") as app,
    ):
        asyncio.run(take(app))
    return 0


def main() -> int:
    return shoot_with_engines(take)


if __name__ == "__main__":
    sys.exit(main())
