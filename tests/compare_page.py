"""Driving the compare page from a browser test: send one prompt to the ticked engines and wait
until the run is finished on the page. Shared by the browser UI tests, the nginx bursts test and
the screenshot script.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chat_page import ANSWER_SECONDS

if TYPE_CHECKING:
    from playwright.async_api import Page, Response

# The page's own sign that a run is finished: its columns are there, none still carries the
# stream compare.js follows (a column loses it when its final rendering replaces it), and every
# timeline is drawn on one scale. compare.js draws a column on the scale of what the run had when
# that column ended and, after the last one, draws the others again on the run's scale; waiting
# for one scale waits for that redraw too.
RUN_FINISHED = """
() => {
  const run = document.querySelector("#compare-run [data-run-id]");
  if (!run || run.querySelector("[data-compare-stream]")) return false;
  const scales = [...run.querySelectorAll("svg[data-timeline]")].map((svg) => svg.dataset.scaleMs);
  return new Set(scales).size <= 1;
}
"""


def is_compare_post(response: Response) -> bool:
    return response.request.method == "POST" and response.url.endswith("/compare")


async def run_compare(
    page: Page,
    base_url: str,
    prompt: str,
    *,
    max_tokens: int,
    thinking: bool | None = None,
    every_engine: bool = False,
) -> None:
    """Send `prompt` from the compare page at `base_url` (greedy, at most `max_tokens`) to the
    engines ticked by default, or to every engine, and wait until the run is finished on the
    page. `thinking` sets the thinking box; None leaves it as the page offers it. The settings
    drawer is folded again before sending, as a person leaves it."""
    await page.goto(base_url + "/compare")
    await page.wait_for_function("() => window.htmx !== undefined")
    if every_engine:
        for engine in await page.locator("input[name=engines]").all():
            await engine.set_checked(True)
    box = page.locator("input[name=thinking]")
    if thinking is not None and await box.is_checked() != thinking:
        # Switching thinking swaps the sampling fields for the new mode's: wait for them before
        # filling them in.
        async with page.expect_response(re.compile(r"/composer/sampling")):
            await box.set_checked(thinking)
    settings = page.locator("details.settings summary")
    await settings.click()
    await page.fill("input[name=temperature]", "0")
    await page.fill("input[name=max_tokens]", str(max_tokens))
    await settings.click()
    await page.fill("#content", prompt)
    async with page.expect_response(is_compare_post) as started:
        await page.click("button.send")
    response = await started.value
    assert response.ok, f"the compare form was refused: {response.status} {await response.text()}"
    await page.wait_for_function(RUN_FINISHED, timeout=ANSWER_SECONDS)
