"""An engine that dies while it is streaming an answer: a real Ollama server, killed mid-answer.

The session's engines are shared by every test, so this one starts a second Ollama server of its
own (same binary, same model store, so the tiny model is already there) on a free loopback port,
streams the endless story from it through the app in Chromium, and kills the server's whole
process group (the server and its model runner) with SIGKILL once answer text is on the page.
What a person must then see: the text that arrived is kept, in the page and in SQLite, and the
answer says in words why it ended.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_server import RunningApp, serve_app
from chat_page import STORY, answer_text, open_chat, rendered_text, send, stored, wait_for_status
from down_engine import closed_port
from duet.devstack import TINY_MODEL_NAME, DevStack, EngineProcess
from duet.engines import build_engines
from duet.settings import Settings

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.engines, pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

START_SECONDS = 60.0


@pytest.fixture
def doomed_ollama(dev_stack: DevStack, tmp_path: Path) -> Iterator[tuple[str, EngineProcess]]:
    """A second Ollama server for this test only: (its URL, its process)."""
    # The session's stack describes how Ollama is run; only the port and log file differ.
    stack = DevStack(paths=dev_stack.paths, ollama_port=closed_port(), log_dir=tmp_path)
    server = stack._ollama_process()
    assert server.env["OLLAMA_MODELS"] == str(dev_stack.paths.ollama_models)
    server.start()
    try:
        server.wait_healthy(timeout=START_SECONDS)
        yield stack.ollama_url, server
    finally:
        server.stop(grace=5)


@pytest.fixture(params=["ollama", "ollama-openai"])
def app_on_doomed_engine(
    request: pytest.FixtureRequest, doomed_ollama: tuple[str, EngineProcess], tmp_path: Path
) -> Iterator[tuple[RunningApp, str, EngineProcess]]:
    """The app with one engine, one of the Ollama routes to the doomed server."""
    url, server = doomed_ollama
    settings = Settings(ollama_url=url, ollama_model=TINY_MODEL_NAME, connect_timeout=5.0)
    engine = build_engines(settings)[request.param]
    with serve_app({request.param: engine}, tmp_path / "duet.sqlite3") as app:
        yield app, request.param, server


async def test_engine_dying_mid_stream_keeps_the_partial_answer_and_says_why(
    page: Page, app_on_doomed_engine: tuple[RunningApp, str, EngineProcess]
) -> None:
    app, engine_name, server = app_on_doomed_engine
    assert server.process is not None
    problems = await open_chat(page, app)
    answer_id = await send(page, STORY, engine_name, thinking=False, max_tokens=3000)
    await page.wait_for_function(
        f"() => document.querySelector('#message-{answer_id} .streaming-text')"
        "?.textContent.length > 0",
        polling="raf",
    )
    os.killpg(server.process.pid, signal.SIGKILL)
    await wait_for_status(page, answer_id, "failed")

    article = page.locator(f"#message-{answer_id}")
    shown = await answer_text(page, answer_id)
    error_shown = await article.locator(".message-error").inner_text()
    assert shown, "the partial answer vanished from the page"
    assert await article.locator(".message-error").is_visible()
    assert "Ollama" in error_shown and "mid-stream" in error_shown, error_shown
    assert "Traceback" not in error_shown

    message = stored(app, answer_id)
    assert message.status == "failed"
    assert message.error == error_shown
    assert message.content.strip() and rendered_text(message.content) == shown
    # The engine died before finishing: the story was cut short, not completed.
    assert message.finish_reason is None
    assert problems == [], problems
