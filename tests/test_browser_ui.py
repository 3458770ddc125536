"""The chat, compare and runs pages as a person uses them (issue 16), in headless Chromium
against the real engines, at a desktop size and a phone size where layout matters
(`sized_page`). Each test is named for the defect it keeps fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import pytest
from app_server import RunningApp, serve_app
from browser_fixtures import VIEWPORTS
from chat_page import (
    ANSWER_SECONDS,
    FRANCE,
    STORY,
    open_chat,
    press_stop,
    send,
    squash,
    stored,
    stored_run,
    wait_for_status,
    watch_problems,
)
from compare_page import run_compare
from down_engine import DownEngine, closed_port
from duet.metrics.answers import answer_metrics
from duet.store import conversations
from duet.store.db import connect
from duet.store.messages import (
    AnswerRecord,
    add_user_message,
    save_assistant,
    start_assistant_message,
)
from duet.store.users import LOCAL_USER_ID
from playwright.async_api import expect

if TYPE_CHECKING:
    from duet.engines.base import Engine
    from playwright.async_api import Browser, Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

STORY_MAX_TOKENS = 3000
LONG_ANSWER = "\n\n".join(f"Paragraph {n} of a long stored answer." for n in range(1, 13))


def seed_conversation(
    app: RunningApp,
    title: str = "Seeded",
    turns: int = 1,
    answer: str = LONG_ANSWER,
    engine: str = "vllm",
    **numbers: Any,
) -> int:
    """A stored conversation of `turns` questions, each with a finished answer from `engine`;
    `numbers` are the answer's AnswerRecord fields (tokens, times, the engine's timings)."""
    numbers = {"completion_tokens": 40, "ttft_ms": 50.0, "total_ms": 1050.0, **numbers}
    db = connect(app.database)
    try:
        conversation = conversations.create_conversation(db, LOCAL_USER_ID, title, "")
        for turn in range(1, turns + 1):
            add_user_message(db, conversation.id, f"Question {turn}?")
            stored = start_assistant_message(
                db,
                conversation.id,
                engine=engine,
                model="qwen3-duet-tiny",
                thinking=False,
                parameters={"temperature": 0.0, "max_tokens": 512},
            )
            save_assistant(db, stored.id, AnswerRecord("complete", content=answer, **numbers))
    finally:
        db.close()
    return conversation.id


async def shown_run_id(page: Page) -> int:
    """The id of the compare run the page shows (the first, on the runs page)."""
    return int(await page.locator("[data-run-id]").first.get_attribute("data-run-id") or 0)


def touch_conversation(app: RunningApp, conversation_id: int, updated_at: datetime) -> None:
    """Make a conversation look last written in at `updated_at`."""
    db = connect(app.database)
    try:
        db.execute(
            "UPDATE conversations SET updated_at = ? WHERE id = ?",
            (updated_at.isoformat(), conversation_id),
        )
        db.commit()
    finally:
        db.close()


def unexpected(problems: list[str], *statuses: int) -> list[str]:
    """The page's problems other than the reports of a refusal with one of these statuses, which
    a test provokes: Chromium logs every answer of 400 or more, htmx every error it swaps in."""
    refusals = [f"status of {status} " for status in statuses]
    refusals += [f"Response Status Error Code {status} " for status in statuses]
    return [problem for problem in problems if not any(text in problem for text in refusals)]


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


# 2. Follow the stream while at the foot of the page; stop when the reader scrolls up.

FROM_FOOT = (
    "() => { const page = document.scrollingElement;"
    " return page.scrollHeight - page.scrollTop - page.clientHeight; }"
)


async def reaches_foot(page: Page) -> None:
    """Wait (briefly) until the page is scrolled to its foot: a page that follows its content
    gets there within a frame of each change (a ResizeObserver runs before the next paint)."""
    await page.wait_for_function(f"() => ({FROM_FOOT})() <= 1", timeout=2_000)


async def streamed_length(page: Page, answer_id: int) -> int:
    return int(
        await page.evaluate(
            "id => document.querySelector(`#message-${id} .streaming-text`)"
            "?.textContent.length ?? -1",
            answer_id,
        )
    )


async def wait_for_more_text(page: Page, answer_id: int, than: int) -> None:
    await page.wait_for_function(
        "([id, than]) => (document.querySelector(`#message-${id} .streaming-text`)"
        "?.textContent.length ?? 0) > than",
        arg=[answer_id, than],
        timeout=ANSWER_SECONDS,
    )


# After this one stored turn the tiny model still tells its endless story; after longer
# histories it gives its short fallback answer instead.
STORY_HISTORY = "\n\n".join(
    f"Paragraph {n} of a long stored answer, written out at some length so that the page grows"
    " taller than the window."
    for n in range(1, 13)
)


async def test_the_page_follows_the_stream_until_the_reader_scrolls_up(
    sized_page: Page, duet_app: RunningApp
) -> None:
    page = sized_page
    jump = page.locator("#jump-latest")
    problems = await open_chat(page, duet_app)
    # A conversation opens at its latest message, the page taller than the window.
    long_one = seed_conversation(duet_app, turns=4)
    await page.goto(f"{duet_app.url}/c/{long_one}")
    assert await page.evaluate("() => document.scrollingElement.scrollTop") > 0
    await reaches_foot(page)
    assert await jump.is_hidden()

    # Sending from the foot: the new message and the streaming answer stay in view.
    conversation_id = seed_conversation(duet_app, answer=STORY_HISTORY)
    await page.goto(f"{duet_app.url}/c/{conversation_id}")
    answer_id = await send(page, STORY, "ollama", thinking=False, max_tokens=STORY_MAX_TOKENS)
    await wait_for_more_text(page, answer_id, 0)
    length = await streamed_length(page, answer_id)
    await wait_for_more_text(page, answer_id, length + 20)
    await reaches_foot(page)
    assert await is_on_screen(page, page.locator(f"#message-{answer_id} .streaming-text"))
    await page.wait_for_function(
        "() => document.scrollingElement.scrollHeight > innerHeight + 700", timeout=ANSWER_SECONDS
    )
    await reaches_foot(page)

    # The reader scrolls up: the page holds still while the text grows, and offers the way back.
    await page.mouse.move(100, 200)
    await page.mouse.wheel(0, -600)
    await jump.wait_for(state="visible")
    top = await page.evaluate("() => document.scrollingElement.scrollTop")
    await wait_for_more_text(page, answer_id, await streamed_length(page, answer_id) + 20)
    assert await page.evaluate("() => document.scrollingElement.scrollTop") == top
    assert await page.evaluate(FROM_FOOT) > 100
    assert await is_on_screen(page, jump)

    # Jump to latest: back at the foot, and following again as the text grows.
    await jump.click()
    await reaches_foot(page)
    await jump.wait_for(state="hidden")
    await wait_for_more_text(page, answer_id, await streamed_length(page, answer_id) + 20)
    await reaches_foot(page)
    await press_stop(page, answer_id)
    await wait_for_status(page, answer_id, "stopped")
    assert problems == [], problems


# 4. An invalid sampling value: the error next to the field, Settings opened, the message kept.


async def test_an_invalid_sampling_value_is_shown_at_its_field(
    sized_page: Page, duet_app: RunningApp
) -> None:
    page = sized_page
    problems = await open_chat(page, duet_app)
    sent: list[str] = []
    page.on(
        "request", lambda request: sent.append(request.url) if "/chat/send" in request.url else None
    )
    settings = page.locator("details.settings")
    await settings.locator("summary").click()
    await page.fill("input[name=temperature]", "5")
    await settings.locator("summary").click()  # folded again, as a person leaves it
    assert await settings.get_attribute("open") is None
    await page.fill("#content", "Hello there")
    await page.click("button.send")

    error = page.locator("#temperature-error")
    await error.wait_for()
    assert await settings.get_attribute("open") is not None
    assert "2" in await error.inner_text()  # the browser's own words: at most 2
    assert await is_on_screen(page, error)
    field = page.locator("input[name=temperature]")
    assert await field.get_attribute("aria-invalid") == "true"
    assert await page.input_value("#content") == "Hello there"
    assert sent == []

    # Corrected, the note goes and the message is sent.
    await page.fill("input[name=temperature]", "0")
    assert await error.count() == 0
    await page.fill("input[name=max_tokens]", "16")
    await page.click("button.send")
    await page.wait_for_selector("#messages article.assistant")
    assert len(sent) == 1
    assert problems == [], problems


# 6. An answer cut off by max tokens says so, and by what.


async def test_an_answer_cut_off_by_max_tokens_says_so(page: Page, duet_app: RunningApp) -> None:
    problems = await open_chat(page, duet_app)
    # Thinking with a budget of 8 tokens: all of it goes to reasoning.
    thought = await send(page, FRANCE, "vllm", thinking=True, max_tokens=8)
    await wait_for_status(page, thought, "complete")
    assert stored(duet_app, thought).finish_reason == "length"
    note = page.locator(f"#message-{thought} .cut-off")
    assert squash(await note.inner_text()).startswith("Cut off while thinking")
    assert "8 tokens" in await note.inner_text()

    # Without thinking, cut off mid-answer.
    story = await send(page, STORY, "ollama", thinking=False, max_tokens=20)
    await wait_for_status(page, story, "complete")
    assert stored(duet_app, story).finish_reason == "length"
    note = page.locator(f"#message-{story} .cut-off")
    assert squash(await note.inner_text()).startswith("Cut off by max tokens")
    assert "20 tokens" in await note.inner_text()
    # An answer that ended by itself has no such note.
    finished = await send(page, FRANCE, "vllm", thinking=False, max_tokens=512)
    await wait_for_status(page, finished, "complete")
    assert await page.locator(f"#message-{finished} .cut-off").count() == 0

    # The compare page says it for each column.
    await run_compare(page, duet_app.url, FRANCE, thinking=True, max_tokens=8)
    notes = page.locator(".compare-answer .cut-off")
    assert await notes.count() == 2
    for text in await notes.all_inner_texts():
        assert squash(text).startswith("Cut off while thinking"), text
    assert problems == [], problems


# 7. Error banners go when their cause has.


async def test_error_banners_are_cleared_when_their_cause_is_gone(
    page: Page, duet_app: RunningApp
) -> None:
    problems = await open_chat(page, duet_app)
    flash = page.locator("#flash")
    # An empty message is refused by the server; typing something makes the banner moot.
    await page.fill("#content", "   ")
    await page.click("button.send")
    await flash.get_by_text("The message is empty").wait_for()
    await page.type("#content", "x")
    await flash.locator(".flash").wait_for(state="detached")

    # A message over the limit says so under the box at once, and is not sent until shorter.
    limit = 32_000
    await page.fill("#content", "a" * (limit + 1))
    note = page.locator("#content-error")
    assert "32,001 characters" in await note.inner_text()
    await page.click("button.send")
    assert await page.locator("#messages article").count() == 0
    await page.fill("#content", "a" * limit)
    assert await note.count() == 0

    # Sending while an answer streams is refused until it ends: Stop takes the banner away.
    answer_id = await send(page, STORY, "ollama", thinking=False, max_tokens=STORY_MAX_TOKENS)
    await page.fill("#content", "And another thing")
    await page.press("#content", "Control+Enter")  # Send gives way to Stop while it streams
    await flash.get_by_text("still streaming").wait_for()
    await press_stop(page, answer_id)
    await wait_for_status(page, answer_id, "stopped")
    await flash.locator(".flash").wait_for(state="detached")
    assert await page.input_value("#content") == "And another thing"

    # Compare with no engine ticked; ticking one takes the banner away.
    await page.goto(duet_app.url + "/compare")
    await page.wait_for_function("() => window.htmx !== undefined")
    for box in await page.locator("input[name=engines]").all():
        await box.set_checked(False)
    await page.fill("#content", FRANCE)
    await page.click("button.send")
    await flash.get_by_text("Tick at least one engine").wait_for()
    await page.locator("input[name=engines]").first.check()
    await flash.locator(".flash").wait_for(state="detached")
    assert unexpected(problems, 409, 422) == [], problems


# 3. One tok/s, the decode speed, the same on every page; a burst is not a speed.


async def test_tokens_per_second_is_the_decode_speed_on_every_page(
    page: Page, duet_app: RunningApp
) -> None:
    problems = await open_chat(page, duet_app)
    # 40 tokens, the 39 after the first in 1 s: 39.0 tok/s.
    steady = seed_conversation(duet_app, answer="Fast.")
    await page.goto(f"{duet_app.url}/c/{steady}")
    rate = page.locator("#messages .stats .decode-rate")
    assert await rate.inner_text() == "decode 39.0 tok/s"
    assert "decode speed" in (await rate.get_attribute("title") or "")
    # The 39 after the first within half a millisecond: a burst, not 78,000 tok/s.
    burst = seed_conversation(duet_app, answer="Fast.", ttft_ms=500.0, total_ms=500.5)
    await page.goto(f"{duet_app.url}/c/{burst}")
    assert await rate.inner_text() == "chunks arrived together"
    assert "tok/s" not in await page.locator("#messages .stats").inner_text()

    # A real compare run: its column, the runs table and the chat show one figure per answer.
    await run_compare(page, duet_app.url, FRANCE, thinking=False, max_tokens=40)
    columns = page.locator(".compare-answer")
    shown = [
        await columns.nth(index).locator('[data-metric="server_decode_rate"]').inner_text()
        for index in range(2)
    ]
    run_id = await shown_run_id(page)
    run = stored_run(duet_app, run_id)
    for answer, figure in zip(run.answers, shown, strict=True):
        server = answer_metrics(answer).server
        assert server.ttft is not None and server.e2e is not None and answer.output_tokens
        per_token = (server.e2e - server.ttft) / (answer.output_tokens - 1)
        # Under 1 ms a token (vLLM on a busy CPU can send a whole answer in one chunk).
        expected = "chunks arrived together" if per_token < 0.001 else f"{1 / per_token:.1f} tok/s"
        assert figure == expected, (figure, answer.server_arrivals)
    await page.goto(duet_app.url + "/runs")
    header = page.locator("#runs-table thead th")
    assert "decode" in await header.all_inner_texts()
    decode_column = (await header.all_inner_texts()).index("decode")
    rows = page.locator(f'#runs-table tbody[data-run-id="{run_id}"] tr')
    for index, figure in enumerate(shown):
        cells = rows.nth(index).locator("td")
        # The first row's run, prompt and mode cells span the group: count cells from the end.
        offset = (await header.count()) - await cells.count()
        assert await cells.nth(decode_column - offset).inner_text() == figure
    assert problems == [], problems


# 12. The tab's title follows the conversation's: after its first message and after a rename.


async def test_the_tab_title_follows_the_first_message_and_a_rename(
    page: Page, duet_app: RunningApp
) -> None:
    problems = await open_chat(page, duet_app)
    assert await page.title() == "New chat · Duet"
    answer_id = await send(page, FRANCE, "vllm", thinking=False, max_tokens=16)
    await page.wait_for_function("title => document.title === title", arg=f"{FRANCE} · Duet")
    assert await page.locator("#conversation-title").inner_text() == FRANCE
    await wait_for_status(page, answer_id, "complete")

    conversation_id = int(page.url.rsplit("/", 1)[1])
    item = page.locator(f"#conversation-{conversation_id}")
    await item.locator("summary").click()
    await item.locator("button", has_text="Rename").click()
    await page.fill(f"#title-{conversation_id}", "Paris, briefly")
    await page.click(".rename-form button.primary")
    await page.wait_for_function("() => document.title === 'Paris, briefly · Duet'")
    assert await page.locator("#conversation-title").inner_text() == "Paris, briefly"
    # The renamed entry is swapped in after the title changes: wait for it, not read at once.
    await expect(item).to_have_class(re.compile(r"\bcurrent\b"))
    # Renaming another conversation changes neither.
    other = seed_conversation(duet_app, title="Another")
    await page.reload()
    item = page.locator(f"#conversation-{other}")
    await item.locator("summary").click()
    await item.locator("button", has_text="Rename").click()
    await page.fill(f"#title-{other}", "Renamed elsewhere")
    await page.click(".rename-form button.primary")
    await item.locator(".conversation-link", has_text="Renamed elsewhere").wait_for()
    assert await page.title() == "Paris, briefly · Duet"
    assert await page.locator("#conversation-title").inner_text() == "Paris, briefly"
    assert problems == [], problems


# 11. One sidebar menu open at a time; a click elsewhere or Esc closes it.


async def test_one_sidebar_menu_is_open_at_a_time(page: Page, duet_app: RunningApp) -> None:
    first, second = (seed_conversation(duet_app, title=title) for title in ("One", "Two"))
    problems = await open_chat(page, duet_app)
    menus = page.locator("details.item-menu")
    opened = page.locator("details.item-menu[open]")
    await page.locator(f"#conversation-{first} summary").click()
    await expect(opened).to_have_count(1)
    await page.locator(f"#conversation-{second} summary").click()
    await expect(opened).to_have_count(1)
    assert await page.locator(f"#conversation-{second} details").get_attribute("open") is not None
    assert await is_on_screen(page, page.locator(f"#conversation-{second} .menu button").first)

    await page.locator("#messages").click()  # elsewhere on the page
    await expect(opened).to_have_count(0)

    summary = page.locator(f"#conversation-{first} summary")
    await summary.focus()
    await page.keyboard.press("Enter")  # opened from the keyboard
    await expect(opened).to_have_count(1)
    await page.keyboard.press("Escape")
    await expect(opened).to_have_count(0)
    assert await summary.evaluate("element => element === document.activeElement")
    assert await menus.count() == 2
    assert problems == [], problems


# 15. Editing a message: Ctrl+Enter resends, Esc cancels, the box is not under the composer.


async def assert_between_navigation_and_composer(page: Page, element: Locator) -> None:
    box = await element.bounding_box()
    navigation = await page.locator("nav.site-nav").bounding_box()
    composer = await page.locator("#composer").bounding_box()
    assert box and navigation and composer
    assert box["y"] >= navigation["y"] + navigation["height"], (box, navigation)
    assert box["y"] + box["height"] <= composer["y"], (box, composer)


async def test_editing_a_message_works_from_the_keyboard_and_stays_in_view(
    sized_page: Page, duet_app: RunningApp
) -> None:
    page = sized_page
    conversation_id = seed_conversation(duet_app, turns=3)
    problems = await open_chat(page, duet_app)
    await page.goto(f"{duet_app.url}/c/{conversation_id}")
    await page.locator("details.settings summary").click()
    await page.fill("input[name=temperature]", "0")
    await page.fill("input[name=max_tokens]", "16")
    users = page.locator("#messages article.user")

    # An earlier message: its edit box opens in view, focused; Esc puts the message back.
    await users.first.locator("button.edit").click()
    box = page.locator("#messages .edit-form textarea")
    await box.wait_for()
    await expect(box).to_be_focused()
    await assert_between_navigation_and_composer(page, box)
    await page.keyboard.press("Escape")
    await box.wait_for(state="detached")
    await expect(users.first.locator("button.edit")).to_be_visible()

    # The last message, edited and resent with Ctrl+Enter.
    await users.last.locator("button.edit").click()
    await box.wait_for()
    await assert_between_navigation_and_composer(page, box)
    await box.fill(FRANCE)
    await page.keyboard.press("Control+Enter")
    await page.locator("#messages article.user .user-text", has_text=FRANCE).wait_for()
    answer = page.locator("#messages article.assistant").last
    answer_id = int(await answer.get_attribute("data-message-id") or 0)
    await wait_for_status(page, answer_id, "complete")
    assert await users.count() == 3
    assert stored(duet_app, answer_id).parameters["max_tokens"] == 16
    assert problems == [], problems


# 8. Search finds Chinese and Japanese; snippets read as text, not Markdown.


async def search_for(page: Page, text: str) -> Locator:
    """Type into the sidebar's search and return the hits once htmx has put them in the list.

    It waits for the list's own swap, not for the response: htmx swaps after the response has
    arrived, and a fresh-clone CI run once counted the hits in between (and found none)."""
    await page.evaluate(
        """() => { window.searchSettled = new Promise(resolve => {
            document.body.addEventListener("htmx:afterSettle", function settled(event) {
                if (event.detail.target.id !== "conversation-list") return;
                document.body.removeEventListener("htmx:afterSettle", settled);
                resolve();
            });
        }); }"""
    )
    await page.fill("input.search", text)
    await page.evaluate("() => window.searchSettled")
    return page.locator("#conversation-list .search-hit")


async def test_search_finds_chinese_and_japanese_and_shows_text(
    page: Page, duet_app: RunningApp
) -> None:
    beijing = seed_conversation(duet_app, title="Beijing", answer="我住在**北京市**，你呢？")  # noqa: RUF001
    tokyo = seed_conversation(duet_app, title="Tokyo", answer="東京は**日本**の首都です。")
    cats = seed_conversation(
        duet_app, title="Cats", answer="# Cats\n\nCats are **small** [carnivores](https://x.test)."
    )
    problems = await open_chat(page, duet_app)
    for query, conversation_id, marked in (
        ("北京", beijing, "北京"),
        ("北", beijing, "北"),  # one character
        ("北京市", beijing, "北京市"),
        ("東京", tokyo, "東京"),
        ("日本", tokyo, "日本"),
        ("首都です", tokyo, "首都です"),
        ("carniv", cats, "carnivores"),
    ):
        hits = await search_for(page, query)
        assert await hits.count() == 1, query
        assert await hits.get_attribute("href") == f"/c/{conversation_id}", query
        snippet = hits.locator(".snippet")
        assert await snippet.locator("mark").all_inner_texts() == [marked], query
        text = await snippet.inner_text()
        for syntax in ("**", "](", "# "):
            assert syntax not in text, (query, text)
    hits = await search_for(page, "上海")
    assert await hits.count() == 0
    assert "Nothing matches" in await page.locator("#conversation-list").inner_text()
    assert problems == [], problems


# 9. A phone: the sidebar as a drawer, wide tables scroll in their box, a compact composer.

WIDE_TABLE = (
    "| engine | model | mode | TTFT | TTFA | total | tokens | decode | chunks | verdict |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n"
    "| vLLM | qwen3-duet-tiny | thinking | 242 ms | 259 ms | 486 ms | 40 | 36.9 tok/s | 9 |"
    " steady |\n"
)


async def page_width(page: Page) -> int:
    return int(await page.evaluate("() => document.scrollingElement.scrollWidth"))


async def test_every_page_fits_a_phone(chromium: Browser, duet_app: RunningApp) -> None:
    context = await chromium.new_context(viewport=VIEWPORTS["phone"])
    page = await context.new_page()
    problems = await open_chat(page, duet_app)
    size = VIEWPORTS["phone"]
    table = seed_conversation(duet_app, title="A wide table", answer=WIDE_TABLE)
    chats = [seed_conversation(duet_app, title=f"Chat {n}") for n in range(1, 4)]
    await run_compare(page, duet_app.url, FRANCE, thinking=False, max_tokens=16)
    run_id = await shown_run_id(page)
    for path in ("/", f"/c/{table}", "/compare", "/runs", f"/runs/{run_id}"):
        await page.goto(duet_app.url + path)
        assert await page_width(page) <= size["width"], f"{path} is wider than the phone"

    # The runs table and a table in an answer scroll inside their own boxes.
    await page.goto(duet_app.url + "/runs")
    box = page.locator(".table-box")
    assert await box.evaluate("box => box.scrollWidth > box.clientWidth")
    await page.goto(f"{duet_app.url}/c/{table}")
    answer_table = page.locator("#messages .answer table")
    assert await answer_table.evaluate("table => table.scrollWidth > table.clientWidth")

    # The sidebar is a drawer: shut, it takes no room; open, it covers most of the screen.
    sidebar = page.locator("#sidebar")
    toggle = page.locator(".drawer-toggle")
    assert not await sidebar.is_visible()
    chat_box = await page.locator("main.chat").bounding_box()
    assert chat_box and chat_box["width"] >= size["width"] - 1
    await toggle.click()
    await expect(sidebar).to_be_visible()
    assert await toggle.get_attribute("aria-expanded") == "true"
    # It slides in.
    await page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().left >= 0"
    )
    drawer = await sidebar.bounding_box()
    assert drawer and drawer["x"] >= 0 and drawer["width"] <= 0.9 * size["width"]
    link = page.locator(f"#conversation-{chats[0]} .conversation-link")
    assert await is_on_screen(page, link)
    await page.keyboard.press("Escape")
    await expect(sidebar).to_be_hidden()
    await toggle.click()
    await page.locator(".drawer-backdrop").click(position={"x": size["width"] - 10, "y": 400})
    await expect(sidebar).to_be_hidden()
    await toggle.click()
    await link.click()
    await page.wait_for_url(f"{duet_app.url}/c/{chats[0]}")
    await expect(sidebar).to_be_hidden()

    # A compact composer: its controls on one line under the box; open Settings scroll
    # inside it instead of covering the conversation.
    composer = page.locator("#composer")
    closed = await composer.bounding_box()
    assert closed and closed["height"] <= 0.25 * size["height"], closed
    tops = {
        round((await page.locator(selector).bounding_box() or {"y": -1})["y"] / 10)
        for selector in ("select[name=engine]", "button.send", "details.settings summary")
    }
    assert len(tops) == 1, tops
    await page.locator("details.settings summary").click()
    opened = await composer.bounding_box()
    assert opened and opened["height"] <= 0.5 * size["height"], opened
    await context.close()
    assert problems == [], problems


# 5. A failed compare column leads with its error and shows only the numbers it has.


@pytest.fixture
def half_down_app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    """The app with the real vLLM and an Ollama whose server is down."""
    mixed: dict[str, Any] = {
        "vllm": engines["vllm"],
        "ollama": DownEngine("ollama", "Ollama", closed_port()),
    }
    with serve_app(mixed, tmp_path / "duet.sqlite3") as running:
        yield running


async def test_a_failed_compare_column_leads_with_its_error(
    page: Page, half_down_app: RunningApp
) -> None:
    problems = await watch_problems(page)
    await run_compare(page, half_down_app.url, FRANCE, thinking=False, max_tokens=40)
    healthy, failed = page.locator(".compare-answer").nth(0), page.locator(".compare-answer").nth(1)
    assert (await healthy.locator("h2").inner_text()).strip() == "vLLM"
    assert "status-failed" in (await failed.get_attribute("class") or "")

    # The failed column: its header, then why, and no numbers it does not have.
    first = failed.locator("> :nth-child(2)")
    assert "message-error" in (await first.get_attribute("class") or "")
    assert await first.inner_text()
    assert await failed.locator("[data-metrics-panel], svg[data-timeline]").count() == 0
    text = await failed.inner_text()
    for healthy_looking in ("all arrived", "Steady", "n/a", "0 chunks"):
        assert healthy_looking not in text, (healthy_looking, text)
    assert "nothing to time" in text

    # The healthy column keeps its numbers and timeline.
    assert await healthy.locator("[data-metrics-panel]").count() == 1
    assert await healthy.locator("svg[data-timeline]").count() == 1
    assert unexpected(problems, 503) == [], problems


# 10. Compare answers belong to their run: the chat sidebar lists one once it is continued
# (tests/test_browser_runs.py has the rest: one conversation per Continue, at both sizes).


async def test_compare_runs_add_nothing_to_the_sidebar_until_continued(
    page: Page, duet_app: RunningApp
) -> None:
    problems = await open_chat(page, duet_app)
    await run_compare(page, duet_app.url, FRANCE, thinking=False, max_tokens=16)
    await run_compare(page, duet_app.url, FRANCE, thinking=False, max_tokens=16)
    await page.goto(duet_app.url + "/")
    assert await page.locator("#conversation-items .conversation-item").count() == 0

    # Continued from the last run's first column: made then, listed, and kept once written in.
    await page.goto(duet_app.url + "/runs")
    await page.locator("#runs-table a[href^='/runs/']").first.click()
    await page.locator(".compare-answer .continue button").first.click()
    await page.wait_for_url(re.compile(r"/c/\d+$"))
    conversation_id = int(page.url.rsplit("/", 1)[1])
    current = page.locator(f"#conversation-{conversation_id}.current")
    await expect(current).to_have_count(1)
    answer_id = await send(page, "And of Italy?", "vllm", thinking=False, max_tokens=16)
    await wait_for_status(page, answer_id, "complete")
    await page.goto(duet_app.url + "/")
    items = page.locator("#conversation-items .conversation-item")
    await expect(items).to_have_count(1)
    assert await items.get_attribute("id") == f"conversation-{conversation_id}"
    assert problems == [], problems


# 14. Compare details: one time scale, readable labels, unwrapped values, readable times, and
# the definitions one click away.


async def test_compare_details_read_well(page: Page, duet_app: RunningApp) -> None:
    problems = await open_chat(page, duet_app)
    await run_compare(page, duet_app.url, FRANCE, thinking=False, max_tokens=24, every_engine=True)
    # One column per configured engine route (three, or four with Transformers).
    routes = await page.locator("input[name=engines]").count()
    columns = page.locator(".compare-answer")
    assert routes >= 3 and await columns.count() == routes

    async def scales() -> list[str]:
        timelines = page.locator("svg[data-timeline]")
        return [await svg.get_attribute("data-scale-ms") or "" for svg in await timelines.all()]

    # Drawn live, each column ends up on the run's one scale, the one its page uses.
    await page.wait_for_function(
        "() => new Set([...document.querySelectorAll('svg[data-timeline]')]"
        ".map(svg => svg.dataset.scaleMs)).size === 1"
    )
    live = await scales()
    assert len(live) == routes
    for label in await page.locator(".tl-labels span, .tl-axis span").all():
        size = await label.evaluate("element => parseFloat(getComputedStyle(element).fontSize)")
        assert size >= 11, size
    run_id = await shown_run_id(page)
    await page.goto(f"{duet_app.url}/runs/{run_id}")
    assert await scales() == live
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", await page.locator(".run-prompt .when").inner_text()
    )

    # The runs table: every value on one line, and what the numbers mean one click away.
    await page.goto(duet_app.url + "/runs")
    line = await page.evaluate("() => parseFloat(getComputedStyle(document.body).lineHeight)")
    for cell in await page.locator("#runs-table td").all():
        text = await cell.inner_text()
        if not re.fullmatch(r"[\d.,]+ ?(ms|s|tok/s)?", text.strip()):
            continue  # words (a prompt, "chunks arrived together") may wrap; values may not
        height = await cell.evaluate(
            "cell => { const range = document.createRange(); range.selectNodeContents(cell);"
            " return range.getBoundingClientRect().height; }"
        )
        assert height < 2 * line, text
    help_text = page.locator(".numbers-help")
    await help_text.locator("summary").click()
    assert "arrived together" in await help_text.inner_text()
    assert await is_on_screen(page, help_text.locator("dt").first)
    assert problems == [], problems


# 13. A long time to first token says where it went, where the engine reports it.


async def test_a_long_time_to_first_token_says_where_it_went(
    page: Page, duet_app: RunningApp
) -> None:
    problems = await open_chat(page, duet_app)
    # The case: TTFT 16.7 s with 0.55 s loading and 0.07 s of prompt by Ollama's clock.
    timings = {"load_duration": 0.55, "prompt_eval_duration": 0.07, "eval_duration": 1.85}
    queued = seed_conversation(
        duet_app, engine="ollama", ttft_ms=16_700.0, total_ms=18_550.0, engine_timings=timings
    )
    await page.goto(f"{duet_app.url}/c/{queued}")
    note = page.locator("#messages [data-ttft-split]")
    text = squash(await note.inner_text())
    assert "16.08 s waiting" in text and "550 ms loading" in text and "70 ms reading" in text
    assert "Ollama's own clock" in text
    # A quick one says it only in the TTFT's tooltip.
    quick = seed_conversation(
        duet_app, engine="ollama", ttft_ms=300.0, engine_timings={**timings, "load_duration": 0.1}
    )
    await page.goto(f"{duet_app.url}/c/{quick}")
    assert await note.count() == 0
    ttft = page.locator("#messages .stats span", has_text="TTFT")
    assert "loading the model" in (await ttft.get_attribute("title") or "")
    # vLLM reports none of it: a long TTFT says so.
    slow_vllm = seed_conversation(duet_app, ttft_ms=2500.0, total_ms=3500.0)
    await page.goto(f"{duet_app.url}/c/{slow_vllm}")
    assert "vLLM does not report" in await note.inner_text()

    # A real run: Ollama's column says where its TTFT went, by Ollama's clock.
    await run_compare(page, duet_app.url, FRANCE, thinking=False, max_tokens=16)
    run_id = await shown_run_id(page)
    run = stored_run(duet_app, run_id)
    ollama = next(answer for answer in run.answers if answer.engine == "ollama")
    assert {"load_duration", "prompt_eval_duration"} <= ollama.engine_timings.keys()
    row = page.locator(f"#answer-{ollama.id} [data-metrics-panel] tr", has_text="TTFT").first
    hint = await row.get_attribute("title") or ""
    assert "loading the model" in hint and "Ollama's own clock" in hint
    assert problems == [], problems


# 16. Two tabs on one conversation stay in step.


async def test_two_tabs_on_one_conversation_stay_in_step(
    page: Page, chromium: Browser, duet_app: RunningApp
) -> None:
    conversation_id = seed_conversation(duet_app)
    problems = await open_chat(page, duet_app)
    await page.goto(f"{duet_app.url}/c/{conversation_id}")
    other = await page.context.new_page()  # a second tab of the same browser
    other_problems = await open_chat(other, duet_app)
    await other.goto(f"{duet_app.url}/c/{conversation_id}")

    # A turn sent from one tab appears in the other, and its answer streams there too.
    answer_id = await send(page, FRANCE, "vllm", thinking=False, max_tokens=16)
    await other.locator("#messages article.user .user-text", has_text=FRANCE).wait_for()
    await wait_for_status(other, answer_id, "complete")
    await wait_for_status(page, answer_id, "complete")
    assert await other.locator("#messages article").count() == 4
    assert await other.locator("#messages #messages").count() == 0

    # A tab of another browser (no channel between them) catches up when it comes back into view.
    elsewhere = await chromium.new_context(viewport=VIEWPORTS["desktop"])
    away = await elsewhere.new_page()
    away_problems = await open_chat(away, duet_app)
    await away.goto(f"{duet_app.url}/c/{conversation_id}")
    second = await send(page, "And of Italy?", "vllm", thinking=False, max_tokens=16)
    await wait_for_status(page, second, "complete")
    assert await away.locator(f"#message-{second}").count() == 0
    await away.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    await wait_for_status(away, second, "complete")
    assert await away.locator("#messages article").count() == 6
    await elsewhere.close()
    assert problems == other_problems == away_problems == [], (problems, other_problems)


# What users expect from a chat page: Stop in the composer and on Esc, a new-chat shortcut,
# copying a whole message, a favicon, times and prompt tokens on messages, a sidebar by date.


async def test_stop_from_the_composer_and_with_esc(page: Page, duet_app: RunningApp) -> None:
    problems = await open_chat(page, duet_app)
    send_button, stop_button = page.locator("#composer button.send"), page.locator(".composer-stop")
    assert await send_button.is_visible() and not await stop_button.is_visible()
    first = await send(page, STORY, "ollama", thinking=False, max_tokens=STORY_MAX_TOKENS)
    await expect(stop_button).to_be_visible()
    assert not await send_button.is_visible()
    await stop_button.click()
    await wait_for_status(page, first, "stopped")
    await expect(send_button).to_be_visible()

    second = await send(page, STORY, "ollama", thinking=False, max_tokens=STORY_MAX_TOKENS)
    await wait_for_more_text(page, second, 0)
    await page.keyboard.press("Escape")
    await wait_for_status(page, second, "stopped")
    assert stored(duet_app, second).status == "stopped"
    assert problems == [], problems


async def test_a_shortcut_starts_a_new_chat(page: Page, duet_app: RunningApp) -> None:
    conversation_id = seed_conversation(duet_app)
    problems = await open_chat(page, duet_app)
    for path in (f"/c/{conversation_id}", "/runs"):
        await page.goto(duet_app.url + path)
        await page.keyboard.press("Control+Shift+O")
        await page.wait_for_url(duet_app.url + "/")
        assert await page.title() == "New chat · Duet"
    assert problems == [], problems


async def test_copy_a_whole_message_and_the_favicon(page: Page, duet_app: RunningApp) -> None:
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=duet_app.url)
    markdown = "Use **bold** and `code`:\n\n```python\nprint(1)\n```"
    conversation_id = seed_conversation(duet_app, answer=markdown)
    problems = await open_chat(page, duet_app)
    await page.goto(f"{duet_app.url}/c/{conversation_id}")
    await page.locator("#messages article.assistant button.copy-message").click()
    await page.locator(
        "#messages article.assistant button.copy-message", has_text="Copied"
    ).wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == markdown
    await page.locator("#messages article.user button.copy-message").click()
    await page.locator("#messages article.user button.copy-message", has_text="Copied").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == "Question 1?"

    icon = await page.locator("link[rel=icon]").get_attribute("href") or ""
    response = await page.request.get(urljoin(page.url, icon))
    assert response.ok and response.headers["content-type"].startswith("image/svg+xml")
    assert problems == [], problems


async def test_messages_show_their_time_and_prompt_tokens(page: Page, duet_app: RunningApp) -> None:
    problems = await open_chat(page, duet_app)
    answer_id = await send(page, FRANCE, "vllm", thinking=False, max_tokens=16)
    await wait_for_status(page, answer_id, "complete")
    message = stored(duet_app, answer_id)
    assert message.prompt_tokens
    stats = page.locator(f"#message-{answer_id} .stats")
    assert f"{message.prompt_tokens} prompt tokens" in await stats.inner_text()
    for time in await page.locator("#messages article time").all():
        # The reader's own clock (hours and minutes), the full moment in the tooltip.
        assert re.fullmatch(r"\d\d:\d\d( [AP]M)?", await time.inner_text()), await time.inner_text()
        assert await time.get_attribute("title")
    assert problems == [], problems


async def test_the_sidebar_is_grouped_by_date(page: Page, duet_app: RunningApp) -> None:
    ages = {"Today": 0, "Yesterday": 1, "Previous 7 days": 3, "Previous 30 days": 12}
    ids = {label: seed_conversation(duet_app, title=label) for label in ages}
    old = seed_conversation(duet_app, title="Long ago")
    now = datetime.now(UTC)
    for label, days in [*ages.items(), ("Long ago", 90)]:
        touch_conversation(duet_app, ids.get(label, old), now - timedelta(days=days))
    long_ago = (now - timedelta(days=90)).strftime("%B %Y")
    problems = await open_chat(page, duet_app)
    headings = page.locator("#conversation-list .group-label:visible")
    assert await headings.all_inner_texts() == [label.upper() for label in [*ages, long_ago]]
    for label, conversation_id in ids.items():
        group = page.locator(f"#conversation-{conversation_id}").locator("xpath=..")
        heading = group.locator("xpath=preceding-sibling::h2[1]")
        assert await heading.inner_text() == label.upper()
    assert await page.locator("#no-conversations").is_hidden()

    # With nothing written in today, there is no Today heading.
    touch_conversation(duet_app, ids["Today"], now - timedelta(days=2))
    await page.reload()
    assert "TODAY" not in await headings.all_inner_texts()
    assert problems == [], problems


async def test_enter_can_be_set_to_send(page: Page, duet_app: RunningApp) -> None:
    problems = await open_chat(page, duet_app)
    box = page.locator("#content")
    # By default Enter makes a new line.
    await box.fill("one")
    await box.press("Enter")
    assert await box.input_value() == "one\n"
    assert await page.locator("#messages article").count() == 0
    # Set in Settings, kept for the next page: Enter sends, Shift+Enter makes a new line.
    await page.locator("details.settings summary").click()
    await page.locator("input[data-enter-sends]").check()
    await page.reload()
    assert await page.locator("input[data-enter-sends]").is_checked()
    await page.locator("details.settings summary").click()
    await page.fill("input[name=max_tokens]", "8")
    await box.fill("What is")
    await box.press("Shift+Enter")
    await box.type("the capital of France?")
    assert await box.input_value() == "What is\nthe capital of France?"
    await box.press("Enter")
    await page.locator("#messages article.user").wait_for()
    assert await page.locator("#messages article.user .user-text").inner_text() == (
        "What is\nthe capital of France?"
    )
    assert problems == [], problems
