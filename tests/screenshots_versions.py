"""Screenshots of an answer's versions for the docs (docs/screenshots/): a question answered by
vLLM, regenerated (the switcher shows 1/2 once the first version is shown again), and answered
again by Ollama beside vLLM's first answer, in light and dark, desktop and phone:
`versions-{scheme}.png` and `versions-{scheme}-phone.png`, as tests/screenshots.py names them.

    python tests/screenshots_versions.py

Needs the engines running (`duet dev --no-ui`, as tests/screenshots.py does). Not part of the
test run.
"""

from __future__ import annotations

import sys

from app_server import RunningApp
from browser_fixtures import VIEWPORTS
from chat_page import FRANCE, open_chat, send, wait_for_status
from screenshots import SCHEMES, docs_browser, save, shoot_with_engines, shot_path
from test_browser_versions import MAX_TOKENS, newer_answer


async def take(app: RunningApp) -> None:
    async with docs_browser() as browser:
        context = await browser.new_context(viewport=VIEWPORTS["desktop"])
        page = await context.new_page()
        problems = await open_chat(page, app)
        first = await send(page, FRANCE, "vllm", thinking=False, max_tokens=MAX_TOKENS)
        await wait_for_status(page, first, "complete")
        await page.locator(f"#message-{first} button.regenerate").click()
        second = await newer_answer(page, than=first)
        await wait_for_status(page, second, "complete")
        await page.get_by_role("button", name="Previous version").click()
        await page.locator(f"#message-{first}").wait_for()
        again = page.locator(".answer-again").get_by_role("button", name="Ollama", exact=True)
        await again.click()
        await wait_for_status(page, await newer_answer(page, than=second), "complete")
        conversation_url = page.url
        if problems:
            raise SystemExit(f"the page reported errors: {problems}")
        await context.close()

        for size, viewport in VIEWPORTS.items():
            for scheme in SCHEMES:
                context = await browser.new_context(viewport=viewport, color_scheme=scheme)
                page = await context.new_page()
                await page.goto(conversation_url)
                await page.wait_for_selector("#health .badge.up")
                # From the top: the question, the switcher and the pair under it (on a phone the
                # whole page, where the pair stands one answer under the other).
                await page.evaluate("() => window.scrollTo(0, 0)")
                await page.wait_for_timeout(100)
                await save(page, shot_path("versions", scheme, size), full_page=size == "phone")
                await context.close()


def main() -> int:
    return shoot_with_engines(take)


if __name__ == "__main__":
    sys.exit(main())
