"""Driving the chat page from a browser test: open it, send a message, wait for an answer, and
read back what SQLite stored. Shared by the browser chat tests, the engine failure tests and the
screenshot script.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from app_server import RunningApp
from duet.markdown import render_markdown
from duet.store import runs
from duet.store.db import connect
from duet.store.messages import Message, require_message
from duet.store.runs import CompareRun
from duet.store.users import LOCAL_USER_ID

if TYPE_CHECKING:
    from playwright.async_api import Page

FRANCE = "What is the capital of France?"
STORY = "Tell me a story that never ends."
CODE = "Write a Python function that adds two numbers."

ANSWER_SECONDS = 60_000  # ms: the tiny model answers in a few seconds; this is only a ceiling

# Records every text event a page's server-sent event streams deliver, through a listener added
# before the page's own: tests compare them with what reached the screen.
EVENT_RECORDER = """
window.__eventLog = [];
const PageEventSource = window.EventSource;
window.EventSource = class extends PageEventSource {
  constructor(url, options) {
    super(url, options);
    for (const kind of ["reasoning", "answer"]) {
      this.addEventListener(kind, (event) => {
        window.__eventLog.push({ url: String(url), kind, text: JSON.parse(event.data).text });
      });
    }
  }
};
"""

# Records every change to a streaming answer's reasoning and answer text, with whether the
# reasoning block was showing then: with EVENT_RECORDER, the test sees each event reach the
# screen on arrival.
STREAM_RECORDER = """
window.__streamLog = [];
new MutationObserver((records) => {
  for (const record of records) {
    const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    const box = node && node.closest(".reasoning-text, .streaming-text");
    const article = box && box.closest("[data-stream]");
    if (!article) continue;
    const details = article.querySelector("details.reasoning");
    window.__streamLog.push({
      id: Number(article.dataset.messageId),
      kind: box.classList.contains("reasoning-text") ? "reasoning" : "answer",
      length: box.textContent.length,
      reasoningShown: Boolean(details && details.open && !details.hidden),
    });
  }
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


# Reports every Content-Security-Policy violation as a console error, which `open_chat` and
# `watch_problems` collect: a page that needs inline script or style fails the test that loads it.
CSP_RECORDER = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile}:${event.lineNumber} (${event.sample})`);
}, true);
"""


def utf16_length(text: str) -> int:
    """A string's length as JavaScript counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def screen_lengths(events: list[dict]) -> list[int]:
    """The lengths an answer's live text (its reasoning and answer boxes together) goes through
    as stream.js appends these text events (kind, text): leading whitespace is dropped while a
    box is empty, and lengths count UTF-16 units, as in JS."""
    shown = {"reasoning": 0, "answer": 0}
    lengths: list[int] = []
    for event in events:
        text = event["text"]
        if shown[event["kind"]] == 0:
            text = text.lstrip()
        if text:
            shown[event["kind"]] += utf16_length(text)
            lengths.append(sum(shown.values()))
    return lengths


async def events_sent(page: Page, stream_url: str) -> list[dict]:
    """The text events (kind, text) the stream at this URL delivered to the page, in order."""
    sent = await page.evaluate("window.__eventLog")
    return [entry for entry in sent if entry["url"].endswith(stream_url)]


async def stream_records(page: Page, answer_id: int) -> tuple[list[dict], list[dict]]:
    """What the page showed of one chat answer while it streamed (one entry per change of its
    text) and the text events the server sent it, in arrival order."""
    shown = await page.evaluate("window.__streamLog")
    return (
        [entry for entry in shown if entry["id"] == answer_id],
        await events_sent(page, f"/messages/{answer_id}/stream"),
    )


async def watch_problems(page: Page) -> list[str]:
    """A list that fills with the page's script errors (uncaught exceptions, console errors such
    as htmx's swap errors, Content-Security-Policy violations) as they happen, in this page and
    every page it goes on to: tests end by checking that it is empty."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    await page.add_init_script(CSP_RECORDER)
    return problems


async def open_chat(page: Page, app: RunningApp) -> list[str]:
    """Open a new chat; returns the page's problems as `watch_problems` collects them."""
    problems = await watch_problems(page)
    await page.add_init_script(EVENT_RECORDER)
    await page.add_init_script(STREAM_RECORDER)
    await page.goto(app.url + "/")
    # htmx is loaded with `defer`: wait until it has processed the page before using it.
    await page.wait_for_function("() => window.htmx !== undefined")
    return problems


async def send(
    page: Page,
    text: str,
    engine: str,
    *,
    thinking: bool,
    max_tokens: int = 512,
) -> int:
    """Fill the composer and send; return the id of the answer that starts streaming."""
    await page.select_option("select[name=engine]", engine)
    box = page.locator("input[name=thinking]")
    if await box.is_checked() != thinking:
        # The box swaps the sampling fields for the new mode's defaults: let that land before
        # typing into them, or the swap would undo what was typed.
        async with page.expect_response(re.compile(r"/composer/sampling")):
            await box.set_checked(thinking)
        await page.wait_for_load_state("networkidle")
    settings = page.locator("details.settings")
    if await settings.get_attribute("open") is None:
        await settings.locator("summary").click()
    await page.fill("input[name=temperature]", "0")  # greedy: the tiny model's fixed answers
    await page.fill("input[name=max_tokens]", str(max_tokens))
    before = await page.locator("#messages article.assistant").count()
    await page.fill("#content", text)
    await page.click("button.send")
    answers = page.locator("#messages article.assistant")
    await page.wait_for_function(
        f"() => document.querySelectorAll('#messages article.assistant').length > {before}"
    )
    return int(await answers.last.get_attribute("data-message-id") or 0)


async def wait_for_status(page: Page, answer_id: int, status: str) -> None:
    """Wait until the answer has ended and its stored version is on the page, then check how it
    ended (an answer that failed instead says why in the assertion)."""
    # htmx settles a swapped-in element by giving it the old one's classes for a moment: wait
    # for the stored version's own status class, not merely for the new element.
    finished = page.locator(
        f"#message-{answer_id}:not([data-stream]):not(.status-streaming):not(.htmx-settling)"
    )
    await finished.wait_for(timeout=ANSWER_SECONDS)
    classes = (await finished.get_attribute("class") or "").split()
    if f"status-{status}" not in classes:
        error = finished.locator(".message-error")
        reason = await error.inner_text() if await error.count() else ""
        raise AssertionError(f"answer {answer_id} ended as {classes}, not {status}: {reason}")


def stored(app: RunningApp, message_id: int) -> Message:
    db = connect(app.database)
    try:
        return require_message(db, message_id)
    finally:
        db.close()


def stored_run(app: RunningApp, run_id: int) -> CompareRun:
    db = connect(app.database)
    try:
        run = runs.get_run(db, LOCAL_USER_ID, run_id)
    finally:
        db.close()
    assert run is not None
    return run


def squash(text: str) -> str:
    """Text with its whitespace runs made single spaces, for comparing what pages show."""
    return " ".join(text.split())


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def rendered_text(markdown_source: str) -> str:
    """The text a stored answer shows on the page: its Markdown rendered, without the tags."""
    parser = _TextOnly()
    parser.feed(render_markdown(markdown_source))
    parser.close()
    return squash("".join(parser.parts))


async def answer_text(page: Page, answer_id: int) -> str:
    """The text of a finished answer as the page shows it (to compare with `rendered_text`)."""
    return squash(await page.locator(f"#message-{answer_id} .answer").text_content() or "")


async def press_stop(page: Page, answer_id: int) -> None:
    """Press the answer's Stop button. The click is dispatched to the button rather than aimed
    with the mouse: while text streams in, the page grows and scrolls under the button, and a
    pointer click waits for it to hold still, by which time a short answer can be over."""
    await page.locator(f"#message-{answer_id} button.stop").dispatch_event("click")
