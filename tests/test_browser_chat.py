"""The chat page in headless Chromium against the real engines (issue 3's acceptance).

The app runs under uvicorn in a thread (`app_server.serve_app`) with the session's engines and
a fresh SQLite file per test; the browser drives it the way a person does: pick an engine, type,
send, watch, stop, reload. What the page showed is checked against what SQLite holds, and for
vLLM, Stop is checked against the engine's own Prometheus counters.

The tiny test model answers some prompts in a fixed way (see duet.tinymodel.corpus): the France
question has reasoning that mentions "capital of France" and a bold **Paris**; the endless story
goes on long enough to be stopped; the Python prompt gives a fenced code block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_app
from chat_page import (
    CODE,
    FRANCE,
    STORY,
    answer_text,
    open_chat,
    press_stop,
    rendered_text,
    screen_lengths,
    send,
    squash,
    stored,
    stream_records,
    wait_for_status,
)
from duet.engines.base import Engine
from duet.store import conversations
from duet.store.db import connect
from duet.store.messages import (
    AnswerRecord,
    add_user_message,
    save_assistant,
    start_assistant_message,
)
from duet.store.users import LOCAL_USER_ID
from vllm_metrics import VllmMetrics

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.engines, pytest.mark.asyncio(loop_scope="session")]

SCRIPT = "<script>window.__pwned=1</script>"
STORY_MAX_TOKENS = 3000


@pytest.fixture
def app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    with serve_app(engines, tmp_path / "duet.sqlite3") as running:
        yield running


@pytest.fixture(params=["vllm", "ollama", "ollama-openai"])
def engine_name(request: pytest.FixtureRequest, engines: Mapping[str, Engine]) -> str:
    assert request.param in engines, f"{request.param} is not among the session's engines"
    return str(request.param)


async def test_each_engine_streams_reasoning_then_answer_and_keeps_it(
    page: Page, app: RunningApp, engine_name: str
) -> None:
    problems = await open_chat(page, app)
    answer_id = await send(page, FRANCE, engine_name, thinking=True)
    await wait_for_status(page, answer_id, "complete")

    # While streaming: the reasoning arrived first, in the open reasoning block, and every text
    # event reached the screen as it arrived (streamed, not delivered at the end). How many
    # events there are is the engine's business: vLLM merges tokens into one chunk when its API
    # server falls behind, so a stall can bring the whole reasoning at once.
    log, events = await stream_records(page, answer_id)
    kinds = [entry["kind"] for entry in log]
    assert "reasoning" in kinds and "answer" in kinds, log
    assert kinds.index("reasoning") < kinds.index("answer")
    assert all(entry["reasoningShown"] for entry in log if entry["kind"] == "reasoning")
    for kind in ("reasoning", "answer"):
        lengths = [entry["length"] for entry in log if entry["kind"] == kind]
        texts = [event for event in events if event["kind"] == kind]
        assert lengths == screen_lengths(texts), (kind, lengths, texts)
    timings = await page.evaluate(f"window.duetTimings[{answer_id}].events")
    assert [event["seq"] for event in timings] == sorted(event["seq"] for event in timings)

    # Finished: the stored answer replaces the live text; reasoning folds into a closed block.
    article = page.locator(f"#message-{answer_id}")
    reasoning = article.locator("details.reasoning")
    assert await reasoning.is_visible()
    assert await reasoning.get_attribute("open") is None
    await reasoning.locator("summary").click()
    await page.wait_for_selector(f"#message-{answer_id} .reasoning-text:visible")
    assert "capital of France" in await article.locator(".reasoning-text").inner_text()
    assert await article.locator(".answer strong").inner_text() == "Paris"

    message = stored(app, answer_id)
    assert message.status == "complete" and message.engine == engine_name
    assert "capital of France" in message.reasoning
    assert "**Paris**" in message.content
    assert await answer_text(page, answer_id) == rendered_text(message.content)

    # The send added the new conversation on top of the sidebar, as the current one.
    current = page.locator("#conversation-list .conversation-item.current .conversation-link")
    assert await current.inner_text() == FRANCE
    first = page.locator("#conversation-items > li").first
    assert await first.locator(".conversation-link").inner_text() == FRANCE
    assert await page.locator("#no-conversations").is_hidden()

    # Reload: the conversation comes back from SQLite, in the sidebar and in the page.
    await page.reload()
    assert await current.inner_text() == FRANCE
    assert await page.locator("#messages article.user .user-text").inner_text() == FRANCE
    assert await page.locator(f"#message-{answer_id} .answer strong").inner_text() == "Paris"

    # And from a new chat, through the sidebar link.
    await page.click("a.new-chat")
    await page.wait_for_url(app.url + "/")
    assert await page.locator("#messages article").count() == 0
    await page.click(f"#conversation-list a.conversation-link:text-is('{FRANCE}')")
    await page.wait_for_selector(f"#message-{answer_id}.status-complete")
    assert "Paris" in await page.locator(f"#message-{answer_id} .answer").inner_text()
    assert problems == [], problems


async def test_stop_keeps_the_partial_answer_and_aborts_the_engine_request(
    page: Page, app: RunningApp, engine_name: str, vllm_metrics: VllmMetrics
) -> None:
    if engine_name == "vllm":
        before = vllm_metrics.quiet_books()
    problems = await open_chat(page, app)
    answer_id = await send(page, STORY, engine_name, thinking=False, max_tokens=STORY_MAX_TOKENS)
    article = page.locator(f"#message-{answer_id}")
    # Stop as soon as some of the answer is on the page, the way a person would, only faster.
    await page.wait_for_function(
        f"() => document.querySelector('#message-{answer_id} .streaming-text')"
        "?.textContent.length > 0",
        polling="raf",
    )
    await press_stop(page, answer_id)
    await wait_for_status(page, answer_id, "stopped")

    shown = await answer_text(page, answer_id)
    assert shown, "the partial answer vanished from the page"
    assert "Stopped." in await article.locator(".message-note").inner_text()
    message = stored(app, answer_id)
    assert message.status == "stopped"
    assert message.content.strip() and rendered_text(message.content) == shown
    assert message.error is None

    if engine_name == "vllm":
        await asyncio.to_thread(vllm_metrics.assert_aborted_since, before, STORY_MAX_TOKENS)

    # The stopped answer survives a reload.
    await page.reload()
    assert await answer_text(page, answer_id) == shown
    assert problems == [], problems


async def test_reload_mid_answer_reattaches_to_the_running_generation(
    page: Page, app: RunningApp
) -> None:
    """The answer is generated by the server, not the tab: a reload shows it again from its first
    word, goes on streaming it, and Stop still reaches it."""
    problems = await open_chat(page, app)
    # Ollama: on a CPU it tells the story slowly enough to reload in the middle of it.
    answer_id = await send(page, STORY, "ollama", thinking=False, max_tokens=STORY_MAX_TOKENS)
    live_text = f"#message-{answer_id}[data-stream] .streaming-text"
    await page.wait_for_function(
        f"() => document.querySelector('{live_text}')?.textContent.length > 0", polling="raf"
    )
    await page.reload()
    await page.wait_for_function(
        f"() => document.querySelector('{live_text}')?.textContent.length > 0", polling="raf"
    )
    before_stop = await page.locator(live_text).text_content() or ""
    await press_stop(page, answer_id)
    await wait_for_status(page, answer_id, "stopped")

    message = stored(app, answer_id)
    # What the re-attached page showed is the stored answer's beginning: replayed once, in order.
    assert before_stop and message.content.lstrip().startswith(before_stop), (
        before_stop,
        message.content,
    )
    reattached, _ = await stream_records(page, answer_id)
    assert reattached, "after the reload no text streamed into the page"
    assert await answer_text(page, answer_id) == rendered_text(message.content)
    assert problems == [], problems


async def test_html_in_messages_and_answers_renders_as_text(
    page: Page, app: RunningApp, engines: Mapping[str, Engine]
) -> None:
    # A user message with a script, sent for real: shown as the characters typed.
    problems = await open_chat(page, app)
    answer_id = await send(page, f"Say hi {SCRIPT}", "vllm", thinking=False)
    await wait_for_status(page, answer_id, "complete")
    user_text = page.locator("#messages article.user .user-text")
    assert await user_text.inner_text() == f"Say hi {SCRIPT}"

    # An answer with HTML in it. The tiny model cannot be made to write HTML, so the answer is
    # stored the way a generation stores one, and the page is loaded from SQLite.
    html_answer = 'Here is markup: <b>bold?</b> <img src=x onerror="window.__pwned=2"> ' + SCRIPT
    db = connect(app.database)
    try:
        conversation = conversations.create_conversation(db, LOCAL_USER_ID, "HTML answer", "")
        add_user_message(db, conversation.id, "Show me some HTML.")
        answer = start_assistant_message(
            db, conversation.id, engine="vllm", model="qwen3-duet-tiny", thinking=True,
            parameters={},
        )  # fmt: skip
        save_assistant(
            db,
            answer.id,
            AnswerRecord("complete", content=html_answer, reasoning=f"thinking {SCRIPT}"),
        )
    finally:
        db.close()
    await page.goto(f"{app.url}/c/{conversation.id}")
    article = page.locator(f"#message-{answer.id}")
    assert await answer_text(page, answer.id) == squash(html_answer)
    assert await article.locator(".answer img, .answer b, .answer script").count() == 0
    await article.locator("details.reasoning summary").click()
    assert await article.locator(".reasoning-text").inner_text() == f"thinking {SCRIPT}"
    assert await page.evaluate("window.__pwned") is None
    assert problems == [], problems


async def test_code_blocks_have_a_working_copy_button(page: Page, app: RunningApp) -> None:
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    problems = await open_chat(page, app)
    answer_id = await send(page, CODE, "vllm", thinking=False)
    await wait_for_status(page, answer_id, "complete")
    block = page.locator(f"#message-{answer_id} .code-block")
    assert await block.count() >= 1
    code = await block.first.locator("pre code.language-python").inner_text()
    assert "def " in code
    button = block.first.locator("button.copy-code")
    assert await button.is_visible()
    await button.click()
    await page.wait_for_function(
        "() => document.querySelector('.copy-code').textContent === 'Copied'", polling="raf"
    )
    assert await page.evaluate("navigator.clipboard.readText()") == code
    assert problems == [], problems
