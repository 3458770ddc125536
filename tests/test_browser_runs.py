"""Compare answers belong to their run, and runs can be deleted (issue 16: defect 10 and "runs
that can be deleted"), in headless Chromium against the real engines, at the desktop and the
phone size: three compare runs add nothing to the chat's sidebar; Continue in chat makes one
conversation, and opens it; Delete, confirmed, removes a run from the list and from its own
page.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp
from chat_page import FRANCE, open_chat
from compare_page import run_compare
from duet.store import runs
from duet.store.db import connect
from duet.store.users import LOCAL_USER_ID
from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Dialog, Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]


def stored_counts(app: RunningApp) -> tuple[int, int]:
    """How many compare runs and conversations the app's database holds."""
    db = connect(app.database)
    try:
        conversations = db.execute("SELECT count(*) FROM conversations").fetchone()[0]
        return runs.count_runs(db, LOCAL_USER_ID), int(conversations)
    finally:
        db.close()


async def test_runs_keep_their_answers_continue_makes_one_chat_and_delete_removes_a_run(
    sized_page: Page, duet_app: RunningApp
) -> None:
    page = sized_page
    problems = await open_chat(page, duet_app)
    confirmations: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        confirmations.append(dialog.message)
        await dialog.accept()

    page.on("dialog", confirm)
    for _ in range(3):
        await run_compare(page, duet_app.url, FRANCE, thinking=False, max_tokens=16)
    await page.goto(duet_app.url + "/")
    sidebar = page.locator(".conversation-item")
    await expect(page.locator("#no-conversations")).to_be_attached()
    assert await sidebar.count() == 0
    assert stored_counts(duet_app) == (3, 0)

    # Continue in chat, from the newest run's first column: one conversation, opened.
    await page.goto(duet_app.url + "/runs")
    rows = page.locator("#runs-table tbody.run-rows")
    await expect(rows).to_have_count(3)
    newest = await rows.first.get_attribute("data-run-id")
    await page.goto(f"{duet_app.url}/runs/{newest}")
    column = page.locator(".compare-answer").first
    answer = (await column.locator("div.answer").inner_text()).strip()
    assert answer, "the run's page shows the answer's text"
    await column.get_by_role("button", name="Continue in chat").click()
    await page.wait_for_url(re.compile(r"/c/\d+$"))
    continued = page.url
    conversation_id = int(continued.rsplit("/", 1)[1])
    await expect(page.locator("#messages article.user")).to_have_count(1)
    assistant = page.locator("#messages article.assistant")
    await expect(assistant).to_have_count(1)
    assert (await assistant.locator("div.message-body.answer").inner_text()).strip() == answer
    await expect(page.locator(".conversation-item")).to_have_count(1)
    await expect(page.locator(f"#conversation-{conversation_id}")).to_be_attached()
    # Again from the run's page: the same conversation, not a second one.
    await page.goto(f"{duet_app.url}/runs/{newest}")
    await (
        page.locator(".compare-answer").first.get_by_role("button", name="Continue in chat").click()
    )
    await page.wait_for_url(continued)
    assert stored_counts(duet_app) == (3, 1)

    # Delete on the list: asked first, then the run's rows go.
    await page.goto(duet_app.url + "/runs")
    oldest = rows.last
    oldest_id = await oldest.get_attribute("data-run-id")
    async with page.expect_response(re.compile(rf"/runs/{oldest_id}$")) as deleted:
        await oldest.get_by_role("button", name=f"Delete run #{oldest_id}").click()
    assert (await deleted.value).status == 200
    await expect(rows).to_have_count(2)
    assert confirmations[-1].startswith(f"Delete run #{oldest_id} and its answers?")
    # Delete on a run's own page: back to the list, without it.
    await page.goto(f"{duet_app.url}/runs/{newest}")
    await page.get_by_role("button", name=f"Delete run #{newest}").click()
    await page.wait_for_url(duet_app.url + "/runs")
    await expect(rows).to_have_count(1)
    assert await page.locator(f'#runs-table a[href="/runs/{newest}"]').count() == 0
    assert len(confirmations) == 2
    # The conversation continued from a deleted run is the user's, and stays.
    assert stored_counts(duet_app) == (1, 1)
    await page.goto(continued)
    await expect(page.locator("#messages article.assistant")).to_have_count(1)
    assert problems == [], problems
