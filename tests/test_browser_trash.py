"""Issue 16 in the browser, against the real engines, at a desktop size and a phone size: a
deleted conversation can be restored from the trash; the composer shows how much of the
context window the conversation fills; a tab that has not seen the latest turns is refused
and shown them, keeping what was typed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp
from browser_fixtures import VIEWPORTS
from chat_page import FRANCE, STORY, open_chat, send, stored, wait_for_status
from duet.devstack import TINY_CONTEXT
from duet.store.db import connect
from playwright.async_api import expect
from test_browser_ui import seed_conversation, unexpected

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]


def trashed_at(app: RunningApp, conversation_id: int) -> str | None:
    db = connect(app.database)
    try:
        row = db.execute(
            "SELECT deleted_at FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
    finally:
        db.close()
    return None if row is None else row[0]


async def open_sidebar(page: Page) -> None:
    """On a phone the sidebar is a drawer: open it (on a desktop it is always there)."""
    toggle = page.locator(".drawer-toggle")
    if await toggle.is_visible() and await toggle.get_attribute("aria-expanded") == "false":
        await toggle.click()


async def delete_from_sidebar(page: Page, conversation_id: int) -> None:
    await open_sidebar(page)
    await page.locator(f"#conversation-{conversation_id} summary").click()
    await page.locator(f"#conversation-{conversation_id} .menu button.danger").click()


async def test_delete_undo_and_the_trash_page(sized_page: Page, duet_app: RunningApp) -> None:
    page = sized_page
    kept = seed_conversation(duet_app, title="Keep me")
    gone = seed_conversation(duet_app, title="Let me go")
    emptied = seed_conversation(duet_app, title="Empty me")
    problems = await open_chat(page, duet_app)

    # Deleted: at once, no question, an Undo in its place, which puts it back.
    await delete_from_sidebar(page, kept)
    entry = page.locator(f"#conversation-{kept}")
    await expect(entry).to_contain_text("Moved “Keep me” to the trash")
    assert trashed_at(duet_app, kept) is not None
    await page.locator(f"#conversation-{kept} button.undo").click()
    await expect(page.locator(f"#conversation-{kept} a.conversation-link")).to_have_text("Keep me")
    assert trashed_at(duet_app, kept) is None

    # In the trash it is out of the search and the list.
    await delete_from_sidebar(page, emptied)
    await delete_from_sidebar(page, kept)
    await delete_from_sidebar(page, gone)
    await expect(page.locator(f"#conversation-{gone} button.undo")).to_be_visible()
    await page.fill("#sidebar .search", "Question")
    await expect(page.locator("#conversation-list")).to_contain_text("Nothing matches")
    await page.fill("#sidebar .search", "")
    await expect(page.locator("#conversation-list .conversation-item")).to_have_count(0)

    # The trash page, from the sidebar: Restore, Delete forever and Empty (after asking).
    await page.locator("#sidebar a.trash-link").click()
    await page.wait_for_url("**/trash")
    rows = page.locator(".trash-row:not(.restored)")
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_contain_text("Let me go")  # the latest deleted first
    await expect(rows.first).to_contain_text("deleted for good after")
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= (page.viewport_size or {"width": 0})["width"], (
        "the trash is wider than the page"
    )
    await page.locator(f"#trashed-{kept} button.restore").click()
    await expect(page.locator(f"#trashed-{kept}")).to_contain_text("Restored Keep me")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.locator(f"#trashed-{gone} button.delete-forever").click()
    await expect(page.locator(f"#trashed-{gone}")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.locator("button.empty-trash").click()
    await expect(page.locator("#trash-body [role=status]")).to_have_text(
        "Deleted 1 conversation for good."
    )
    await expect(page.locator("#trash-empty")).to_be_visible()
    await expect(page.locator("button.empty-trash")).to_have_count(0)
    assert trashed_at(duet_app, gone) is None and stored_conversations(duet_app) == [kept]
    await page.goto(f"{duet_app.url}/c/{kept}")
    await expect(page.locator("#messages article.assistant")).to_have_count(1)
    assert problems == [], problems


def stored_conversations(app: RunningApp) -> list[int]:
    db = connect(app.database)
    try:
        return [row[0] for row in db.execute("SELECT id FROM conversations ORDER BY id")]
    finally:
        db.close()


async def test_deleting_the_open_conversation_mid_answer_stops_it_and_offers_undo(
    page: Page, duet_app: RunningApp
) -> None:
    problems = await open_chat(page, duet_app)
    answer_id = await send(page, STORY, "vllm", thinking=False, max_tokens=3000)
    conversation_id = stored(duet_app, answer_id).conversation_id
    await page.locator(f"#message-{answer_id} .streaming-text").filter(has_text="a").wait_for()
    await delete_from_sidebar(page, conversation_id)
    await page.wait_for_url(f"**/?trashed={conversation_id}")
    notice = page.locator("#flash .undo-notice")
    await expect(notice).to_contain_text("is in the trash for 30 days")
    assert stored(duet_app, answer_id).status == "stopped"
    await notice.locator("button.undo").click()
    await page.wait_for_url(f"**/c/{conversation_id}")
    await expect(page.locator(f"#message-{answer_id}.status-stopped")).to_have_count(1)
    # The stopped answer's stream ends as the delete lands, and the page asks for the stored
    # answer: that can meet the conversation already in the trash (404) just before the page
    # goes to the new chat. Nothing else may go wrong.
    assert unexpected(problems, 404) == [], problems


async def test_the_composer_shows_how_full_the_context_window_is(
    sized_page: Page, duet_app: RunningApp
) -> None:
    page = sized_page
    problems = await open_chat(page, duet_app)
    line = page.locator("#context-use")
    await expect(line).to_be_hidden()  # a new chat has no prompt yet
    for engine in ("vllm", "ollama"):
        answer_id = await send(page, FRANCE, engine, thinking=False, max_tokens=16)
        await wait_for_status(page, answer_id, "complete")
        tokens = stored(duet_app, answer_id).prompt_tokens
        assert tokens
        await expect(line).to_contain_text(f"Context: {tokens:,} of {TINY_CONTEXT:,} tokens")
        await expect(line).to_be_visible()
    await expect(line.locator(".context-warning")).to_have_count(0)

    # A conversation whose last prompt filled most of the window warns.
    full = seed_conversation(duet_app, title="Long", prompt_tokens=int(TINY_CONTEXT * 0.9))
    await page.goto(f"{duet_app.url}/c/{full}")
    await expect(line.locator(".context-warning")).to_contain_text("Nearly full: vLLM refuses")
    await expect(line).to_contain_text("(90 %)")
    box = await line.bounding_box()
    composer = await page.locator("#composer").bounding_box()
    assert box and composer and box["y"] >= composer["y"], "the line is not in the composer"
    assert problems == [], problems


async def last_answer_id(page: Page) -> int:
    answers = page.locator("#messages article.assistant")
    return int(await answers.last.get_attribute("data-message-id") or 0)


async def test_a_tab_behind_is_refused_shown_the_missing_turns_and_told_of_new_ones(
    page: Page, chromium: Browser, duet_app: RunningApp
) -> None:
    conversation_id = seed_conversation(duet_app, title="Two tabs")
    problems = await open_chat(page, duet_app)
    await page.goto(f"{duet_app.url}/c/{conversation_id}")
    # A tab of another browser: no channel between them tells it of the new turn.
    elsewhere = await chromium.new_context(viewport=VIEWPORTS["desktop"])
    other = await elsewhere.new_page()
    other_problems = await open_chat(other, duet_app)
    await other.goto(f"{duet_app.url}/c/{conversation_id}")
    answer_id = await send(other, FRANCE, "vllm", thinking=False, max_tokens=16)
    await wait_for_status(other, answer_id, "complete")

    await page.fill("#content", "Something only this tab wants to say")
    await page.click("button.send")
    await expect(page.locator("#flash .missed-turns")).to_contain_text("moved on in another tab")
    await expect(page.locator(f"#message-{answer_id}")).to_have_count(1)
    await expect(page.locator("#messages .user-text", has_text=FRANCE)).to_have_count(1)
    assert await page.input_value("#content") == "Something only this tab wants to say"
    db = connect(duet_app.database)
    try:
        count = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        db.close()
    assert count == 4, "the refused send stored something"

    # Sent again, now that the tab shows the conversation as it is, it goes through.
    await page.click("button.send")
    await expect(page.locator("#messages .user-text", has_text="only this tab")).to_have_count(1)
    await expect(page.locator("#flash .missed-turns")).to_have_count(0)
    await wait_for_status(page, await last_answer_id(page), "complete")

    # Left in view, the tab is told within its poll (every 15 s) that the other browser went on,
    # and shows the new turn when asked.
    await other.reload()  # it is the one behind now
    await other.wait_for_function("() => window.htmx !== undefined")
    later = await send(other, "And of Italy?", "vllm", thinking=False, max_tokens=16)
    await wait_for_status(other, later, "complete")
    news = page.locator("#conversation-news .conversation-news")
    await news.wait_for(timeout=20_000)
    await news.locator("button.show-news").click()
    await expect(page.locator(f"#message-{later}")).to_have_count(1)
    await expect(news).to_have_count(0)
    await elsewhere.close()
    assert unexpected(problems, 409) == [] and other_problems == [], (problems, other_problems)
