"""Screenshots for the docs: the chat page (docs/screenshots/chat-light.png, chat-dark.png) and a
side-by-side run on the compare page (docs/screenshots/compare.png).

    python tests/screenshots.py

Needs the engines running (`duet dev --no-ui`: vLLM on 8000, Ollama on 11434, serving the tiny
model; DUET_VLLM_URL / DUET_OLLAMA_URL / DUET_*_MODEL point elsewhere). It holds a real
conversation through the app, in headless Chromium, with a fresh database in a temporary
directory: a question answered with thinking on by vLLM (the reasoning block is opened for the
picture) and one answered by Ollama with a code block. Not part of the test run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from app_server import RunningApp, serve_app
from browser import INSTALL_HINT, find_chromium, launch_chromium
from chat_page import CODE, FRANCE, open_chat, send, wait_for_status
from duet.devstack import TINY_MODEL_NAME
from duet.engines import build_engines
from duet.settings import Settings

if TYPE_CHECKING:
    from playwright.async_api import Browser

OUT_DIR = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}


async def take(app: RunningApp) -> None:
    from playwright.async_api import async_playwright

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit(f"no Chromium found: {INSTALL_HINT}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, chromium)
        context = await browser.new_context(viewport=VIEWPORT, color_scheme="light")
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

        for scheme in ("light", "dark"):
            context = await browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
            page = await context.new_page()
            await page.goto(conversation_url)
            await page.wait_for_selector("#health .badge.up")  # health badges have loaded
            await page.locator(f"#message-{first} details.reasoning summary").click()
            path = OUT_DIR / f"chat-{scheme}.png"
            await page.screenshot(path=str(path))
            print(f"wrote {path}")
            await context.close()
        await compare_run(browser, app)
        await browser.close()


async def compare_run(browser: Browser, app: RunningApp) -> None:
    """One prompt to vLLM and Ollama at once, photographed when both panels are filled."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1100})
    page = await context.new_page()
    await page.goto(app.url + "/compare")
    await page.wait_for_function("() => window.htmx !== undefined")
    await page.locator("details.settings summary").click()
    await page.fill("input[name=temperature]", "0")
    await page.fill("input[name=max_tokens]", "60")
    await page.fill("#content", FRANCE)
    await page.click("button.send")
    await page.wait_for_function(
        "() => document.querySelectorAll('[data-metrics-panel]').length === 2", timeout=120_000
    )
    path = OUT_DIR / "compare.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}")
    await context.close()


def main() -> int:
    settings = Settings.from_env()
    settings = Settings(
        vllm_url=settings.vllm_url,
        ollama_url=settings.ollama_url,
        vllm_model=os.environ.get("DUET_VLLM_MODEL", TINY_MODEL_NAME),
        ollama_model=os.environ.get("DUET_OLLAMA_MODEL", TINY_MODEL_NAME),
    )
    engines = build_engines(settings)
    with (
        tempfile.TemporaryDirectory() as scratch,
        serve_app(engines, Path(scratch) / "duet.sqlite3") as app,
    ):
        asyncio.run(take(app))
    return 0


if __name__ == "__main__":
    sys.exit(main())
