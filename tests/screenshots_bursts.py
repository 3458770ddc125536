"""Screenshots of the compare view served through a buffering nginx: the timeline's bursts.

    python tests/screenshots_bursts.py [FOLDER]

One prompt compared on vLLM and Ollama through nginx with buffering on (duet.bench.nginx's
"buffering" site, as tests/test_browser_nginx_bursts.py runs it), photographed when both columns
have finished, in light and dark, desktop and phone: `compare-bursts-{scheme}[-phone].png`;
and one run through the shipped site beside it, `compare-steady-light.png`. Into FOLDER,
docs/screenshots by default. Needs the engines running (`duet dev --no-ui`, as
tests/screenshots.py does). Not part of the test run.
"""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from app_server import RunningApp
from browser_fixtures import VIEWPORTS
from duet.bench.nginx import Variant, nginx_proxy
from screenshots import OUT_DIR, SCHEMES, docs_browser, save, shoot_with_engines, shot_path
from test_browser_nginx_bursts import compare_run

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def shoot(browser: Browser, proxy_url: str, path: Path, size: str, scheme: str) -> None:
    """One compare run made through the proxy, photographed once both columns are finished."""
    context = await browser.new_context(
        viewport=VIEWPORTS[size], color_scheme=scheme, ignore_https_errors=True
    )
    page = await context.new_page()
    await compare_run(page, proxy_url)
    await page.wait_for_selector("#health .badge.up")
    await save(page, path, full_page=True)
    await context.close()


async def take(app: RunningApp, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    async with docs_browser() as browser:
        await take_through(browser, app, "buffering", "compare-bursts", out, list(VIEWPORTS))
        await take_through(browser, app, "shipped", "compare-steady", out, ["desktop"], ["light"])


async def take_through(
    browser: Browser,
    app: RunningApp,
    variant: Variant,
    name: str,
    out: Path,
    sizes: list[str],
    schemes: tuple[str, ...] | list[str] = SCHEMES,
) -> None:
    """The compare page through nginx in `variant`, a run at each size and scheme."""
    with (
        tempfile.TemporaryDirectory() as workdir,
        nginx_proxy(app.url, variant, Path(workdir)) as proxy,
    ):
        for size in sizes:
            for scheme in schemes:
                await shoot(
                    browser, proxy.url, out / shot_path(name, scheme, size).name, size, scheme
                )


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    return shoot_with_engines(partial(take, out=out))


if __name__ == "__main__":
    sys.exit(main())
