"""The Load page as an admin uses it, in headless Chromium against the real engines, at a
desktop size and a phone size: a small sweep started from the form (vLLM and Ollama, straight
and through Duet, concurrency 1 and 2), its progress moving while it runs, a second start
refused, then the table and the charts (each drawn, and holding a labelled series per engine
route and path)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_asgi
from chat_page import watch_problems
from duet.app import create_app
from duet.engines.base import Engine
from duet.settings import Settings
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import expect
from test_load_page import svg_texts

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

# 2 routes x 2 paths x 2 points x 2 requests: small enough for the shared CPU engines, run
# once at each size.
REQUESTS = 2
SWEEP = {"concurrency": "1,2", "input_len": "32", "output_len": "16", "requests": str(REQUESTS)}
SENT = 2 * 2 * 2 * REQUESTS
SWEEP_SECONDS = 300
SERIES = ("vllm, straight", "vllm, through Duet", "ollama, straight", "ollama, through Duet")
AXES = {
    "ttft": ("TTFT p50 (ms)", "TTFT p99 (ms)", "concurrency (requests in flight)"),
    "tpot": ("TPOT p50 (ms)", "concurrency (requests in flight)"),
    "throughput": ("output tokens/s", "concurrency (requests in flight)"),
    "per_user": ("tokens/s per user (1 / TPOT p50)", "total output tokens/s (all users)"),
}


@pytest.fixture
def load_app(
    engine_settings: Settings, engines: dict[str, Engine], tmp_path: Path
) -> Iterator[RunningApp]:
    """Duet with the real engines, whose settings (the engines' addresses and model) the
    sweep uses for its own requests."""
    database = tmp_path / "duet.sqlite3"
    app = create_app(engine_settings, engines=engines, database=database)
    with serve_asgi(app) as url:
        yield RunningApp(url, database)


async def shown_count(page: Page) -> tuple[int, int] | None:
    """The live section's "n of m requests"; None once the results have replaced it."""
    with contextlib.suppress(PlaywrightTimeout):
        text = await page.locator("#load-count").text_content(timeout=1000) or ""
        found = re.fullmatch(r"(\d+) of (\d+) requests", text.strip())
        assert found is not None, text
        return int(found[1]), int(found[2])
    return None


async def test_a_sweep_from_the_load_page_shows_progress_then_the_charts(
    sized_page: Page, load_app: RunningApp
) -> None:
    page = sized_page
    problems = await watch_problems(page)
    await page.goto(load_app.url + "/load")
    await page.wait_for_function("() => window.htmx !== undefined")
    await expect(page.locator(".site-nav a[href='/load']")).to_have_attribute(
        "aria-current", "page"
    )
    await expect(page.locator(".load-warning")).to_contain_text("chatting with")
    for name in ("vllm", "ollama"):
        await page.locator(f"input[name=routes][value={name}]").check()
    await page.locator("input[name=routes][value=ollama-openai]").uncheck()
    for name in ("direct", "duet"):
        await page.locator(f"input[name=paths][value={name}]").check()
    for field, value in SWEEP.items():
        await page.fill(f"input[name={field}]", value)
    await page.fill("input[name=repeats]", "1")
    await page.get_by_role("button", name="Start the sweep").click()
    await page.wait_for_url(re.compile(r"/load/runs/\d+$"))

    # Running: the progress section polls, and its count moves.
    live = page.locator("#load-live")
    await expect(live).to_have_attribute("data-status", "running")
    await expect(page.locator("#load-progress")).to_be_visible()
    form = {**SWEEP, "routes": "vllm", "paths": "direct", "repeats": "1"}
    second = await page.request.post(load_app.url + "/load", form=form)
    assert second.status == 409 and "running already" in await second.text()
    seen: set[tuple[int, int]] = set()
    async with asyncio.timeout(SWEEP_SECONDS):
        while await live.get_attribute("data-status") == "running":
            count = await shown_count(page)
            if count is not None:
                seen.add(count)
            await page.wait_for_timeout(300)
    assert {total for _, total in seen} == {SENT}, seen
    assert any(0 < done < SENT for done, _ in seen), f"no progress seen between the ends: {seen}"

    # Ended: the table, the charts.
    await expect(live).to_have_attribute("data-status", "complete")
    rows = page.locator("#load-table tbody tr")
    await expect(rows).to_have_count(8)
    for row in await rows.all():
        done_of_sent = await row.locator("td").nth(1).text_content()
        assert done_of_sent == f"{REQUESTS}/{REQUESTS}"
    charts = page.locator("#load-charts img")
    await expect(charts).to_have_count(4)
    width = (page.viewport_size or {"width": 0})["width"]
    for image in await charts.all():
        await image.scroll_into_view_if_needed()
        loaded = await image.evaluate("img => img.complete && img.naturalWidth > 0")
        assert loaded, await image.get_attribute("src")
        box = await image.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1
        source = await image.get_attribute("src") or ""
        name = source.rsplit("/", 1)[1].removesuffix(".svg")
        drawn = await page.request.get(load_app.url + source)
        assert drawn.headers["content-type"] == "image/svg+xml"
        texts = svg_texts(await drawn.text())
        assert set(SERIES) <= texts, (name, texts)
        assert set(AXES[name]) <= texts, (name, texts)
    assert problems == [], problems
