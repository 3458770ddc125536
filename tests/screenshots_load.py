"""Screenshots of the Load page for the docs (docs/screenshots/): a sweep while it runs
(`load-running-{scheme}.png`), the run's page once it has ended (`load-run-{scheme}.png`) and
the page with its form and the run listed (`load-{scheme}.png`), light and dark, desktop and
phone (`-phone`), as tests/screenshots.py names them.

    python tests/screenshots_load.py

Needs the engines running (`duet dev --no-ui`, as tests/screenshots.py does). One small sweep
(vLLM and Ollama, straight and through Duet, concurrency 1, 2 and 4) started from the form in
headless Chromium, with a fresh database in a temporary directory. Not part of the test run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from app_server import serve_asgi
from browser_fixtures import VIEWPORTS
from duet.app import create_app
from screenshots import SCHEMES, docs_browser, save, settings_from_env, shot_path

if TYPE_CHECKING:
    from playwright.async_api import Page

SWEEP = {"concurrency": "1,2,4", "input_len": "64", "output_len": "24", "requests": "4"}
SWEEP_SECONDS = 900


async def every_look(page: Page, name: str, full_page: bool) -> None:
    """The page as it is now at each size and scheme."""
    for size, viewport in VIEWPORTS.items():
        await page.set_viewport_size(viewport)
        for scheme in SCHEMES:
            await page.emulate_media(color_scheme=scheme)
            await page.wait_for_timeout(300)
            await save(page, shot_path(name, scheme, size), full_page=full_page)


async def take(url: str) -> None:
    async with docs_browser() as browser:
        context = await browser.new_context(viewport=VIEWPORTS["desktop"])
        page = await context.new_page()
        await page.goto(url + "/load")
        await page.wait_for_function("() => window.htmx !== undefined")
        for field, value in SWEEP.items():
            await page.fill(f"input[name={field}]", value)
        await page.get_by_role("button", name="Start the sweep").click()
        await page.wait_for_url("**/load/runs/*")
        # Once a point has ended, its row stands under the progress bar.
        await page.wait_for_selector(
            "#load-live[data-status=running] #load-table tbody tr", timeout=SWEEP_SECONDS * 1000
        )
        await every_look(page, "load-running", full_page=False)
        await page.wait_for_selector(
            "#load-live[data-status=complete]", timeout=SWEEP_SECONDS * 1000
        )
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#load-charts img')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        await every_look(page, "load-run", full_page=True)
        # The form, and the run in the list of load runs.
        await page.goto(url + "/load")
        await every_look(page, "load", full_page=True)


def main() -> int:
    settings = settings_from_env()
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(settings, database=Path(scratch) / "duet.sqlite3")
        with serve_asgi(app) as url:
            asyncio.run(take(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
