"""Screenshots of the trash and the context-window line for the docs (docs/screenshots/), light
and dark, desktop and phone (`-phone`), as tests/screenshots.py names them:

- `trash-{scheme}.png`: the trash page with three deleted conversations;
- `context-{scheme}.png`: a conversation answered by vLLM and Ollama, the line under the box
  saying how much of the window the last prompt filled (and, in the sidebar, a conversation
  just deleted, with its Undo);
- `context-full-{scheme}.png`: a conversation whose last prompt filled 90 % of the window.

    python tests/screenshots_trash.py

Needs the engines running (`duet dev --no-ui`, as tests/screenshots.py does). A fresh database
in a temporary directory. Not part of the test run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app_server import RunningApp
from browser import INSTALL_HINT, find_chromium, launch_chromium
from browser_fixtures import VIEWPORTS
from chat_page import FRANCE, open_chat, send, wait_for_status
from duet.devstack import TINY_CONTEXT
from duet.store import trash
from duet.store.db import connect
from duet.store.users import LOCAL_USER_ID
from screenshots import OUT_DIR, SCHEMES, save, shoot_with_engines, shot_path
from test_browser_ui import seed_conversation

if TYPE_CHECKING:
    from playwright.async_api import Page

DELETED = ("Trip to Lisbon, packing list", "Regex for ISO dates", "Draft: reply to the landlord")


async def take(app: RunningApp) -> None:
    from playwright.async_api import async_playwright

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit(f"no Chromium found: {INSTALL_HINT}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    db = connect(app.database)
    for title in DELETED:
        trash.move_to_trash(db, LOCAL_USER_ID, seed_conversation(app, title=title, turns=2))
    full = seed_conversation(
        app, title="A long conversation", prompt_tokens=int(TINY_CONTEXT * 0.9)
    )
    just_deleted = seed_conversation(app, title="Shopping list")
    db.close()
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, chromium)
        context = await browser.new_context(viewport=VIEWPORTS["desktop"])
        page = await context.new_page()
        problems = await open_chat(page, app)
        first = await send(page, FRANCE, "vllm", thinking=False, max_tokens=32)
        await wait_for_status(page, first, "complete")
        second = await send(page, "And of Italy?", "ollama", thinking=False, max_tokens=32)
        await wait_for_status(page, second, "complete")
        conversation_url = page.url
        if problems:
            raise SystemExit(f"the page reported errors: {problems}")
        for size, viewport in VIEWPORTS.items():
            await page.set_viewport_size(viewport)
            for scheme in SCHEMES:
                await page.emulate_media(color_scheme=scheme)
                if size == "desktop":  # the sidebar, with an Undo: a phone's is a closed drawer
                    await delete_from_sidebar(page, app, just_deleted)
                await shoot_context(page, shot_path("context", scheme, size))
                await page.goto(f"{app.url}/c/{full}")
                await shoot_context(page, shot_path("context-full", scheme, size))
                await page.goto(f"{app.url}/trash")
                await page.wait_for_timeout(200)
                await save(page, shot_path("trash", scheme, size))
                await page.goto(conversation_url)
                await page.wait_for_function("() => window.htmx !== undefined")
        await browser.close()


async def delete_from_sidebar(page: Page, app: RunningApp, conversation_id: int) -> None:
    """Delete a conversation from the sidebar, restored first if an earlier shot deleted it."""
    db = connect(app.database)
    trash.restore(db, LOCAL_USER_ID, conversation_id)
    db.close()
    await page.reload()
    await page.wait_for_function("() => window.htmx !== undefined")
    await page.locator(f"#conversation-{conversation_id} summary").click()
    await page.locator(f"#conversation-{conversation_id} .menu button.danger").click()
    await page.locator(f"#conversation-{conversation_id} button.undo").wait_for()


async def shoot_context(page: Page, path: Path) -> None:
    """The page at its latest message, once the line under the box has loaded."""
    await page.locator("#context-use .context-figure").wait_for()
    await page.wait_for_timeout(300)
    await save(page, path)


def main() -> int:
    return shoot_with_engines(take)


if __name__ == "__main__":
    sys.exit(main())
