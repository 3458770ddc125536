"""Versions of an answer as a person uses them (issue 16), in headless Chromium against the
real engines, at a desktop size and a phone size (`sized_page`): Regenerate keeps the first
answer behind a 1/2 switcher that a reload remembers, and "Answer again with" Ollama puts
Ollama's answer beside vLLM's (two columns on a desktop, one under the other on a phone), each
with its own numbers; the next turn goes on from the answer picked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp
from chat_page import ANSWER_SECONDS, FRANCE, open_chat, send, stored, wait_for_status
from duet.store import answer_versions
from duet.store.db import connect
from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

MAX_TOKENS = 60


async def newer_answer(page: Page, than: int) -> int:
    """The id of the answer that appeared on the page after answer `than` was asked."""
    newest = (
        "() => Math.max(0, ...[...document.querySelectorAll('#messages article.assistant')]"
        ".map((article) => Number(article.dataset.messageId)))"
    )
    await page.wait_for_function(f"than => ({newest})() > than", arg=than, timeout=ANSWER_SECONDS)
    return int(await page.evaluate(newest))


async def box(element: Locator) -> dict[str, float]:
    found = await element.bounding_box()
    assert found is not None, "not on the page"
    return dict(found)


def path_ids(app: RunningApp, conversation_id: int) -> list[int]:
    """The conversation as it goes on (each question and its chosen answer), as stored."""
    db = connect(app.database)
    try:
        return [m.id for m in answer_versions.shown_path(db, conversation_id)]
    finally:
        db.close()


async def test_versions_and_another_engines_answer_side_by_side(
    sized_page: Page, duet_app: RunningApp
) -> None:
    page = sized_page
    wide = (page.viewport_size or {"width": 0})["width"] >= 1000
    problems = await open_chat(page, duet_app)
    first = await send(page, FRANCE, "vllm", thinking=False, max_tokens=MAX_TOKENS)
    await wait_for_status(page, first, "complete")
    conversation_id = stored(duet_app, first).conversation_id

    # Regenerate: a second version, shown in place of the first, which is kept.
    await page.locator(f"#message-{first} button.regenerate").click()
    second = await newer_answer(page, than=first)
    await wait_for_status(page, second, "complete")
    number = page.locator("#messages .versions .version-number")
    await expect(number).to_have_text("2/2")
    assert await page.locator(f"#message-{first}").count() == 0
    assert stored(duet_app, first).status == "complete"

    # The previous version, and a reload keeps it.
    await page.get_by_role("button", name="Previous version").click()
    await expect(page.locator(f"#message-{first}")).to_be_visible()
    await expect(number).to_have_text("1/2")
    await expect(page.get_by_role("button", name="Previous version")).to_be_disabled()
    await page.reload()
    await expect(number).to_have_text("1/2")
    await expect(page.locator(f"#message-{first}")).to_be_visible()

    # Answer again with Ollama: beside the first version, each answer with its own numbers.
    again = page.locator(".answer-again")
    await expect(again.get_by_role("button", name="Ollama (/v1)")).to_be_visible()
    await again.get_by_role("button", name="Ollama", exact=True).click()
    beside = await newer_answer(page, than=second)
    await wait_for_status(page, beside, "complete")
    left, right = page.locator(f"#message-{first}"), page.locator(f"#message-{beside}")
    for article, engine in ((left, "vLLM"), (right, "Ollama")):
        await expect(article.locator(".message-meta .engine")).to_have_text(engine)
        await expect(article.locator(".stats")).to_contain_text("TTFT")
        await expect(article.locator(".stats .decode-rate")).to_be_visible()
    answer = stored(duet_app, beside)
    assert answer.engine == "ollama" and answer.status == "complete" and answer.content
    assert answer.parameters == stored(duet_app, first).parameters, "asked the same way"
    one, other = await box(left), await box(right)
    if wide:
        assert abs(one["y"] - other["y"]) < 40 and other["x"] >= one["x"] + one["width"], (
            "two columns on a desktop",
            one,
            other,
        )
    else:
        assert other["y"] >= one["y"] + one["height"], ("stacked on a phone", one, other)
    overflow = await page.evaluate(
        "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    assert overflow <= 0, "the page is wider than the window"

    # The conversation goes on from the first until the other is picked; a reload keeps it.
    marker = "✓ The conversation goes on from this answer"
    await expect(page.locator(".answer-column", has=left).locator(".goes-on")).to_have_text(marker)
    # The context line under the box counts the answer gone on from.
    context_line = page.locator("#context-use")
    await expect(context_line).to_contain_text("vLLM")
    await (
        page.locator(".answer-column", has=right)
        .get_by_role("button", name="Go on from this answer")
        .click()
    )
    await expect(page.locator(".answer-column", has=right).locator(".goes-on")).to_have_text(marker)
    await expect(context_line).to_contain_text("Ollama")
    await page.reload()
    await expect(page.locator(".answer-column", has=right).locator(".goes-on")).to_have_text(marker)
    await expect(context_line).to_contain_text("Ollama")
    assert path_ids(duet_app, conversation_id)[-1] == beside

    # The next turn: the earlier one keeps what it showed, with no controls left.
    follow_up = await send(page, "Thank you!", "vllm", thinking=False, max_tokens=MAX_TOKENS)
    await wait_for_status(page, follow_up, "complete")
    earlier = page.locator("#messages .answers").first
    await expect(earlier.locator(".version-number")).to_have_text("1/2")
    controls = earlier.locator(":is(.show-version, .continue-from, .answer-again, .regenerate)")
    shown = await controls.evaluate_all("(all) => all.filter((e) => e.checkVisibility()).length")
    assert shown == 0, "the earlier turn still offers to change it"
    assert path_ids(duet_app, conversation_id)[1:] == [beside, follow_up - 1, follow_up]
    assert problems == [], problems
