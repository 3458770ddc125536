"""The compare page in headless Chromium against both real engines (issue 4's acceptance): one
prompt, two columns streaming at once, both metric panels filled at both hops, the timeline drawn,
and the run stored with the page's own arrival times and listed on the runs page."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_app
from chat_page import (
    ANSWER_SECONDS,
    EVENT_RECORDER,
    FRANCE,
    events_sent,
    screen_lengths,
    watch_problems,
)
from duet.engines.base import Engine
from duet.metrics.answers import answer_metrics
from duet.store import runs
from duet.store.db import connect
from duet.store.users import LOCAL_USER_ID

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

# Records, per column, every length its streaming text reached: proof that the text arrived
# piece by piece in the page, not all at once when the column was swapped for the final one.
STREAM_RECORDER = """
window.__columnGrowth = {};
new MutationObserver((records) => {
  for (const record of records) {
    const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    const column = node && node.closest("[data-compare-stream]");
    if (!column) continue;
    const lengths = (window.__columnGrowth[column.dataset.answerId] ??= []);
    const text = column.querySelector(".answer-text").textContent
      + column.querySelector(".reasoning-text").textContent;
    if (lengths[lengths.length - 1] !== text.length) lengths.push(text.length);
  }
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


@pytest.fixture
def app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    with serve_app(engines, tmp_path / "duet.sqlite3") as running:
        yield running


async def test_one_prompt_two_columns_both_hops_measured_and_the_run_listed(
    page: Page, app: RunningApp
) -> None:
    problems = await watch_problems(page)
    await page.add_init_script(EVENT_RECORDER)
    await page.add_init_script(STREAM_RECORDER)
    await page.goto(app.url + "/compare")
    await page.wait_for_function("() => window.htmx !== undefined")
    assert await page.locator("input[name=engines]:checked").count() == 2  # vLLM and Ollama
    await page.locator("details.settings summary").click()
    await page.fill("input[name=temperature]", "0")
    await page.fill("input[name=max_tokens]", "40")
    await page.fill("#content", FRANCE)
    await page.click("button.send")

    columns = page.locator(".compare-answer")
    await page.wait_for_function("() => document.querySelectorAll('.compare-answer').length === 2")
    labels = [text.strip() for text in await columns.locator("h2").all_text_contents()]
    assert labels == ["vLLM", "Ollama"]
    assert "shared the hardware" in await page.locator(".run-meta").inner_text()

    panels = page.locator("[data-metrics-panel]")
    await page.wait_for_function(
        "() => document.querySelectorAll('[data-metrics-panel]').length === 2",
        timeout=ANSWER_SECONDS,
    )
    # Every text event reached its column as it arrived. How many events there are is the
    # engine's business (vLLM merges tokens into one chunk when its API server falls behind).
    growth = await page.evaluate("window.__columnGrowth")
    assert len(growth) == 2, f"not every column streamed: {growth}"
    for answer_id, lengths in growth.items():
        events = await events_sent(page, f"/compare/answers/{answer_id}/stream")
        assert any(event["text"] for event in events), f"answer {answer_id}: no text events"
        grown = [length for length in lengths if length]  # 0: a change before any text
        assert grown == screen_lengths(events), (lengths, events)

    for index in range(2):
        panel = panels.nth(index)
        for hop in ("server", "browser"):
            for metric in ("ttft_ms", "itl_p50_ms", "e2e_ms", "chunks"):
                cell = await panel.locator(f'[data-metric="{hop}_{metric}"]').inner_text()
                assert cell.strip() not in ("", "n/a"), f"column {index}: {hop} {metric} empty"
        # The timeline draws one tick per chunk at each hop.
        svg = columns.nth(index).locator("svg[data-timeline]")
        for hop in ("server", "browser"):
            chunks = int(await panel.locator(f'[data-metric="{hop}_chunks"]').inner_text())
            assert chunks > 0 and await svg.locator(f".tl-{hop} line.tick").count() == chunks

    run_id = int((await page.locator("[data-run-id]").first.get_attribute("data-run-id")) or 0)
    assert page.url.endswith(f"/runs/{run_id}")
    db = connect(app.database)
    try:
        run = runs.get_run(db, LOCAL_USER_ID, run_id)
    finally:
        db.close()
    assert run is not None
    assert [answer.engine for answer in run.answers] == ["vllm", "ollama"]
    for answer in run.answers:
        assert answer.status == "complete", answer.error
        assert answer.browser_arrivals, "the page's arrival times were not stored"
        hops = answer_metrics(answer).hops
        assert hops is not None and hops.chunks_preserved

    await page.goto(app.url + "/runs")
    row_group = page.locator(f'#runs-table tbody[data-run-id="{run_id}"]')
    assert await row_group.locator("tr").count() == 2
    text = await row_group.inner_text()
    assert "vLLM" in text and "Ollama" in text and "complete" in text
    assert problems == [], problems
