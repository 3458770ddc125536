"""Every page works under a strict Content-Security-Policy (issue 11): no inline script, no inline
style, no eval, so an injected tag or attribute could do nothing even if one got through.

The app is served with the policy below added to every response (a second policy is enforced on
top of any the app sends itself), and Chromium goes through every page and fragment the way a
person does: a stored conversation with Markdown (a table with aligned columns, a code block),
its edit, rename and search fragments, a message sent with Ctrl+Enter and followed to its end,
a compare run, the runs pages and an error page. Any violation is reported by the page as a
console error (`chat_page.CSP_RECORDER`) and fails the test.

The engines are down (`down_engine`): each answer streams its `sent`, `engine_error` and `end`
events and is swapped for its stored version, so the stream scripts run without real engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from app_server import RunningApp, serve_asgi
from chat_page import ANSWER_SECONDS, open_chat, watch_problems
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.settings import Settings
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
    from playwright.async_api import Page
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
POLICY_HEADER = (b"content-security-policy", POLICY.encode())

ANSWER = """Two engines, side by side:

| engine | port | streams |
|:-------|-----:|:-------:|
| vLLM   | 8000 | SSE     |
| Ollama | 11434| NDJSON  |

```python
def add(a, b):
    return a + b
```
"""


def with_policy(app: ASGIApp) -> ASGIApp:
    """`app` with POLICY added to every HTTP response's headers."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", []),
                    (b"content-security-policy", POLICY.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_policy)

    return wrapped


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RunningApp]:
    engines: dict[str, Any] = {
        "vllm": DownEngine("vllm", "vLLM", closed_port()),
        "ollama": DownEngine("ollama", "Ollama", closed_port()),
    }
    database = tmp_path / "duet.sqlite3"
    with serve_asgi(with_policy(create_app(Settings(), engines=engines, database=database))) as url:
        yield RunningApp(url, database)


def seed_conversation(app: RunningApp) -> int:
    """A stored conversation: a question and a finished answer with reasoning and Markdown."""
    db = connect(app.database)
    try:
        conversation = conversations.create_conversation(db, LOCAL_USER_ID, "Engines", "")
        add_user_message(db, conversation.id, "Which engines does Duet serve?")
        answer = start_assistant_message(
            db, conversation.id, engine="vllm", model="qwen3-test", thinking=True, parameters={}
        )
        save_assistant(db, answer.id, AnswerRecord("complete", content=ANSWER, reasoning="Two."))
    finally:
        db.close()
    return conversation.id


async def send_with_shortcut(page: Page, text: str) -> None:
    """Type into the page's prompt box and send it with Ctrl+Enter (no inline handler does it)."""
    await page.fill("#content", text)
    await page.press("#content", "Control+Enter")


async def test_chat_pages_and_fragments_run_under_the_policy(page: Page, app: RunningApp) -> None:
    conversation_id = seed_conversation(app)
    problems = await open_chat(page, app)
    response = await page.request.get(app.url + "/")
    # Beside any policy the app sends itself: the browser enforces every one.
    assert {"name": "content-security-policy", "value": POLICY} in response.headers_array

    await page.goto(f"{app.url}/c/{conversation_id}")
    await page.wait_for_selector("#health .badge.down")  # the health fragment has loaded
    answer = page.locator("#messages article.assistant").first
    cell = answer.locator(".answer td").nth(1)
    assert await cell.evaluate("cell => getComputedStyle(cell).textAlign") == "right"
    await answer.locator(".code-block button.copy-code").click()

    # The edit fragment and back.
    await page.click("#messages article.user button.edit")
    await page.wait_for_selector("#messages .edit-form")
    await page.click("#messages .edit-form button.link")
    await page.wait_for_selector("#messages article.user button.edit")

    # The rename fragment and back.
    item = page.locator(f"#conversation-{conversation_id}")
    await item.locator("summary").click()
    await item.locator("button", has_text="Rename").click()
    await page.wait_for_selector(".rename-form")
    await page.click(".rename-form button.link")
    await page.wait_for_selector(f"#conversation-{conversation_id} .conversation-link")

    # The search fragment, then the list again.
    await page.fill("input.search", "engines")
    await page.wait_for_selector("#conversation-list .search-hit")
    await page.fill("input.search", "")
    await page.wait_for_selector("#conversation-items")

    # A message sent with Ctrl+Enter: the composer empties, the answer streams and ends.
    await page.click("a.new-chat")
    await page.wait_for_url(app.url + "/")
    await send_with_shortcut(page, "Anyone there?")
    failed = page.locator("#messages article.assistant.status-failed:not([data-stream])")
    await failed.wait_for(timeout=ANSWER_SECONDS)
    assert await page.input_value("#content") == ""
    assert await failed.locator(".message-error").is_visible()

    assert problems == [], problems

    await page.goto(app.url + "/c/999999")  # an error page (the console reports its 404)
    assert not [problem for problem in problems if "CSP" in problem or "Refused" in problem]


async def test_compare_and_runs_pages_run_under_the_policy(page: Page, app: RunningApp) -> None:
    problems = await watch_problems(page)
    await page.goto(app.url + "/compare")
    await page.wait_for_function("() => window.htmx !== undefined")
    await send_with_shortcut(page, "Which engine is faster?")
    await page.wait_for_function(
        "() => document.querySelectorAll("
        "'.compare-answer.status-failed:not([data-compare-stream])').length === 2",
        timeout=ANSWER_SECONDS,
    )
    # The columns stand side by side without an inline style giving their number.
    columns = page.locator(".compare-answer")
    first, second = [await columns.nth(index).bounding_box() for index in range(2)]
    assert first and second and first["y"] == second["y"] and first["x"] < second["x"]

    run_id = await page.locator("[data-run-id]").first.get_attribute("data-run-id")
    await page.goto(f"{app.url}/runs/{run_id}")
    # Both engines are down: each column leads with its error, with no timeline to draw.
    await page.wait_for_selector(".compare-answer .message-error")
    await page.goto(app.url + "/runs")
    await page.wait_for_selector("#runs-table")
    assert problems == [], problems
