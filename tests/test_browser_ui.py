"""The chat, compare and runs pages as a person uses them (issue 16), in headless Chromium
against the real engines, at a desktop size and a phone size where layout matters
(`sized_page`). Each test is named for the defect it keeps fixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp
from chat_page import open_chat
from duet.store import conversations
from duet.store.db import connect
from duet.store.messages import (
    AnswerRecord,
    add_user_message,
    save_assistant,
    start_assistant_message,
)
from duet.store.users import LOCAL_USER_ID

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

LONG_ANSWER = "\n\n".join(f"Paragraph {n} of a long stored answer." for n in range(1, 13))


def seed_conversation(
    app: RunningApp, title: str = "Seeded", turns: int = 1, answer: str = LONG_ANSWER
) -> int:
    """A stored conversation of `turns` questions, each with a finished vLLM answer."""
    db = connect(app.database)
    try:
        conversation = conversations.create_conversation(db, LOCAL_USER_ID, title, "")
        for turn in range(1, turns + 1):
            add_user_message(db, conversation.id, f"Question {turn}?")
            stored = start_assistant_message(
                db,
                conversation.id,
                engine="vllm",
                model="qwen3-duet-tiny",
                thinking=False,
                parameters={"temperature": 0.0, "max_tokens": 512},
            )
            record = AnswerRecord(
                "complete", content=answer, completion_tokens=40, ttft_ms=50.0, total_ms=1050.0
            )
            save_assistant(db, stored.id, record)
    finally:
        db.close()
    return conversation.id


async def is_on_screen(page: Page, element: Locator) -> bool:
    """The element is inside the window and is what a click at its centre would reach (nothing
    covers it)."""
    box = await element.bounding_box()
    if box is None:
        return False
    size = page.viewport_size or {"width": 0, "height": 0}
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if not (0 <= x < size["width"] and 0 <= y < size["height"]):
        return False
    return bool(
        await element.evaluate(
            "(el, [x, y]) => { const hit = document.elementFromPoint(x, y);"
            " return hit !== null && (el === hit || el.contains(hit)); }",
            [x, y],
        )
    )


# 1. One visible navigation on every page.


async def test_every_page_has_one_visible_navigation(
    sized_page: Page, duet_app: RunningApp
) -> None:
    page = sized_page
    conversation_id = seed_conversation(duet_app)
    problems = await open_chat(page, duet_app)
    for path in ("/", f"/c/{conversation_id}", "/compare", "/runs"):
        await page.goto(duet_app.url + path)
        navigation = page.locator("nav.site-nav")
        assert await navigation.count() == 1, path
        for name in ("Chat", "Compare", "Runs"):
            link = navigation.get_by_role("link", name=name, exact=True)
            assert await is_on_screen(page, link), f"{path}: the {name} link is hidden"
    # And the links go where they say, from the chat page.
    await page.goto(f"{duet_app.url}/c/{conversation_id}")
    for name, path in (("Compare", "/compare"), ("Runs", "/runs"), ("Chat", "/")):
        await page.locator("nav.site-nav").get_by_role("link", name=name, exact=True).click()
        await page.wait_for_url(duet_app.url + path)
        current = page.locator("nav.site-nav [aria-current=page]")
        assert await current.inner_text() == name
    assert problems == [], problems
