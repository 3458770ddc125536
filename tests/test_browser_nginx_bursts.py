"""The compare view shows the bursts a buffering proxy makes (issue 17), in headless Chromium.

Duet serves the real engines; Debian's nginx runs in front of it as in test_nginx_proxy.py, once
with a site that buffers (`proxy_buffering on` and Duet's `X-Accel-Buffering: no` ignored, so
nginx holds events until a buffer fills) and once with the shipped site. The whole page, its
prompt and both answers' event streams go through nginx, as a team's browser would use it; the
page times each chunk's arrival itself (compare.js) and Duet compares that with its own
arrivals from the engine (docs/metrics.md, "Bursts"). Through the buffering site, every column
is called bursty and its timeline marks the chunks that reached the page together; through the
shipped site, none is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_app
from browser_fixtures import PAGE_TIMEOUT_MS, VIEWPORTS
from chat_page import STORY, watch_problems
from compare_page import run_compare
from duet.bench.nginx import Variant, nginx_proxy
from duet.engines.base import Engine
from duet.metrics.stream import BURSTY_FRACTION_RISE, MIN_GAPS_FOR_VERDICT

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

# Enough chunks for a verdict on each side, few enough that a run takes a few seconds.
MAX_TOKENS = 40
# Compare runs a test may make before it fails (`assert_shown` says when it makes another).
ATTEMPTS = 3
# nginx's access log line of an answer's event stream.
STREAM_LOGGED = re.compile(r'"GET /compare/answers/\d+/stream ')


@dataclass(frozen=True)
class Column:
    """What one finished column of the compare view shows about its hop."""

    label: str
    verdict: str  # the hop verdict's text
    bursty: bool
    server_chunks: int
    browser_chunks: int
    # How many of each row's chunks the timeline marks as arrived in a burst.
    server_burst_chunks: int
    browser_burst_chunks: int


@pytest.fixture
def app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    with serve_app(engines, tmp_path / "duet.sqlite3") as running:
        yield running


async def columns_shown(page: Page) -> list[Column]:
    return [await column_shown(column) for column in await page.locator(".compare-answer").all()]


async def column_shown(column: Locator) -> Column:
    async def number(selector: str, attribute: str | None = None) -> int:
        element = column.locator(selector)
        text = await (element.get_attribute(attribute) if attribute else element.inner_text())
        return int(text or "")

    verdict = column.locator(".hop-verdict")
    return Column(
        label=(await column.locator("h2").inner_text()).strip(),
        verdict=" ".join((await verdict.inner_text()).split()),
        bursty=await verdict.get_attribute("data-bursty") == "true",
        server_chunks=await number('[data-metric="server_chunks"]'),
        browser_chunks=await number('[data-metric="browser_chunks"]'),
        server_burst_chunks=await number(".tl-server", "data-burst-chunks"),
        browser_burst_chunks=await number(".tl-browser", "data-burst-chunks"),
    )


async def compare_through(
    chromium: Browser, app: RunningApp, variant: Variant, workdir: Path
) -> list[Column]:
    """One compare run made in a fresh page through nginx in `variant`; what its columns show."""
    context = await chromium.new_context(viewport=VIEWPORTS["desktop"], ignore_https_errors=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        problems = await watch_problems(page)
        with nginx_proxy(app.url, variant, workdir) as proxy:
            await run_compare(page, proxy.url, STORY, max_tokens=MAX_TOKENS)
            shown = await columns_shown(page)
            streamed = STREAM_LOGGED.findall((proxy.prefix / "access.log").read_text())
        assert problems == [], problems
    finally:
        await context.close()
    assert [column.label for column in shown] == ["vLLM", "Ollama"], shown
    # The answers' streams themselves went through nginx, not only the page.
    assert len(streamed) == len(shown), streamed
    for column in shown:
        assert column.browser_chunks == column.server_chunks > MIN_GAPS_FOR_VERDICT, column
    return shown


def marked_rise(column: Column) -> float:
    """The share of the column's chunks marked as in a burst at the browser but not at the
    server: what the hop added, as the timeline shows it."""
    return (column.browser_burst_chunks - column.server_burst_chunks) / column.server_chunks


def leaves_room(column: Column) -> bool:
    """Whether the engine's own stream, at the server, was steady enough for a hop's bursts to
    show: an engine that sent nearly every chunk at once (vLLM's API server falls behind on a
    busy machine and writes a backlog together) leaves no rise for the verdict to see."""
    return column.server_burst_chunks / column.server_chunks < 1 - BURSTY_FRACTION_RISE


def as_expected(column: Column, bursts: bool) -> bool:
    """With `bursts`, the view calls the hop bursty and its timeline marks the clumps, far more
    of the browser row than of the server row; without, it does neither."""
    called = column.bursty and column.verdict.startswith("Bursty")
    marked = marked_rise(column) >= BURSTY_FRACTION_RISE
    return called and marked if bursts else not called and not marked


async def assert_shown(
    chromium: Browser, app: RunningApp, variant: Variant, workdir: Path, *, bursts: bool
) -> None:
    """Every column of a compare run through nginx in `variant` shows bursts, or none.

    A run is made again (up to ATTEMPTS) when an engine's own stream left no room for a hop's
    bursts (`leaves_room`), and, through the shipped site, when a column shows bursts: a stall
    of this shared machine can hold one stretch of one stream (test_nginx_proxy.py saw one), or
    delay the page's opening of a stream until after the engine's first chunks, which Duet
    then sends together. A buffering hop groups the events of every run, so it fails every
    attempt; through it, a column that could show bursts and shows none fails at once."""
    failures = []
    for attempt in range(ATTEMPTS):
        shown = await compare_through(chromium, app, variant, workdir / str(attempt))
        cramped = [column for column in shown if not leaves_room(column)]
        wrong = [column for column in shown if not as_expected(column, bursts)]
        if not cramped and not wrong:
            return
        failures.append(
            f"attempt {attempt + 1}: expected {'bursts' if bursts else 'none'}, "
            f"not as expected: {wrong}; the engine sent its chunks together: {cramped}"
        )
        if bursts and any(column not in cramped for column in wrong):
            break  # a stream that could show bursts showed none
    pytest.fail("\n".join(failures))


async def test_a_buffering_proxy_shows_as_bursts(
    chromium: Browser, app: RunningApp, tmp_path: Path
) -> None:
    await assert_shown(chromium, app, "buffering", tmp_path / "nginx", bursts=True)


async def test_the_shipped_site_shows_no_bursts(
    chromium: Browser, app: RunningApp, tmp_path: Path
) -> None:
    await assert_shown(chromium, app, "shipped", tmp_path / "nginx", bursts=False)
