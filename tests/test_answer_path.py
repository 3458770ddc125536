"""The answer path against the real Ollama: store first, then launch, and the server's clock.

A send stores the user's message and the answer's row in one transaction, and only then asks
the engine; a send whose rows cannot be stored never asks it. Every event of an answer is
stamped from the moment its engine request's last byte was written (the `sent` event), so
Duet's own time before that is never charged to the engine, and the adapter reads each response
to its end, so the next request reuses the connection. A save that fails while an answer streams
is told as a storage problem, and the answer is saved once the database takes writes again.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_server import RunningApp, serve_app
from duet import generation as generation_module
from duet.bench.sse_client import parse_events
from duet.devstack import TINY_MODEL_NAME, DevStack
from duet.engines.base import ChatMessage, ChatRequest, OnSent, Sampling
from duet.engines.events import AnswerDelta, StreamEvent
from duet.engines.ollama import OllamaEngine
from duet.generation import Generations
from duet.published import AnswerEnded, RequestSent
from duet.store import conversations, messages, open_database
from duet.store.messages import require_message

pytestmark = [pytest.mark.engines]

FORM = {
    "engine": "ollama",
    "temperature": "0",
    "top_p": "1",
    "top_k": "0",
    "max_tokens": "16",
    "system_prompt": "",
}


def request() -> ChatRequest:
    sampling = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=8)
    return ChatRequest(
        messages=(ChatMessage(role="user", content="hi"),), thinking=False, sampling=sampling
    )


@pytest.mark.asyncio(loop_scope="function")
async def test_server_clock_starts_on_the_wire_and_connections_are_reused(
    dev_stack: DevStack, tmp_path: Path
) -> None:
    engine = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, TINY_MODEL_NAME)
    db: sqlite3.Connection = open_database(tmp_path / "duet.sqlite3")
    generations = Generations(db)
    conversation = conversations.create_conversation(db, 1, "t")
    try:
        for _ in range(2):
            answer = messages.start_assistant_message(
                db, conversation.id, engine="ollama", model=TINY_MODEL_NAME, thinking=False,
                parameters={},
            )  # fmt: skip
            received = time.perf_counter()
            generation = generations.start(answer.id, conversation.id, engine, request(), received)
            assert await generation.wait_sent(10.0)
            assert generation.task is not None
            await generation.task
            first, last = generation.events[0], generation.events[-1]
            assert isinstance(first.event, RequestSent) and first.t == 0.0
            assert isinstance(last.event, AnswerEnded) and last.event.status == "complete"
            assert received <= generation.started
            assert first.event.after_receipt_ms == pytest.approx(
                (generation.started - received) * 1000, abs=0.01
            )
            # Every token arrived after the request was on the wire.
            text_ts = [e.t for e in generation.events if isinstance(e.event, AnswerDelta)]
            assert text_ts and all(t > 0 for t in text_ts)
            assert require_message(db, answer.id).status == "complete"
        # The first response was read to its end, so the second request reused its connection.
        assert engine.connections_opened == 1
    finally:
        await engine.aclose()
        db.close()


class RowsWhenAsked:
    """The real Ollama adapter, noting which messages the database holds at the moment the
    engine is asked for an answer (read through a connection of its own)."""

    def __init__(self, inner: OllamaEngine, database: Path) -> None:
        self.inner = inner
        self.database = database
        self.seen: list[list[tuple[str, str]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]:
        with sqlite3.connect(self.database) as reader:
            rows = reader.execute("SELECT role, status FROM messages ORDER BY id").fetchall()
        self.seen.append([(role, status) for role, status in rows])
        return self.inner.stream_chat(request, on_sent)


@pytest.fixture
def watched_app(dev_stack: DevStack, tmp_path: Path) -> Iterator[tuple[RunningApp, RowsWhenAsked]]:
    database = tmp_path / "duet.sqlite3"
    ollama = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, TINY_MODEL_NAME)
    watched = RowsWhenAsked(ollama, database)
    with serve_app({"ollama": watched}, database) as app:  # type: ignore[dict-item]
        yield app, watched


def answer_id_of(page: str) -> int:
    return int(re.findall(r'data-stream="/messages/(\d+)/stream"', page)[0])


def test_the_rows_are_stored_before_the_engine_is_asked(
    watched_app: tuple[RunningApp, RowsWhenAsked],
) -> None:
    app, watched = watched_app
    with httpx.Client(base_url=app.url, timeout=60) as client:
        sent = client.post("/chat/send", data={**FORM, "content": "Say hi."})
        assert sent.status_code == 200, sent.text
        with client.stream("GET", f"/messages/{answer_id_of(sent.text)}/stream") as stream:
            names = [event.event for event in parse_events(stream.iter_lines())]
    assert names[0] == "sent" and names[-1] == "end"
    assert watched.seen == [[("user", "complete"), ("assistant", "streaming")]]


def test_a_send_that_cannot_be_stored_never_asks_the_engine(
    watched_app: tuple[RunningApp, RowsWhenAsked],
) -> None:
    app, watched = watched_app
    with sqlite3.connect(app.database) as db:
        db.execute(
            "CREATE TRIGGER refuse INSERT ON messages WHEN NEW.content = 'refuse me'"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    with httpx.Client(base_url=app.url, timeout=60) as client:
        refused = client.post(
            "/chat/send", data={**FORM, "content": "refuse me"}, headers={"HX-Request": "true"}
        )
    assert refused.status_code == 503
    assert "could not use its database" in refused.text
    assert str(app.database.resolve()) in refused.text
    assert "Ollama" not in refused.text, "a storage error is not blamed on the engine"
    assert watched.seen == [], "the engine was asked for an answer that had no row"
    with sqlite3.connect(app.database) as db:
        assert db.execute("SELECT count(*) FROM conversations").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_an_answer_that_cannot_be_saved_is_kept_and_saved_later(
    watched_app: tuple[RunningApp, RowsWhenAsked], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves fail while the answer streams (a trigger refuses every update of the answer): the
    stream goes on, its end says the answer was not saved and why, the page's fragment shows the
    answer from memory, and once updates work again the answer is in the database."""
    monkeypatch.setattr(generation_module, "SAVE_RETRY_SECONDS", 0.2)
    app, _ = watched_app
    with sqlite3.connect(app.database) as db:
        db.execute("CREATE TABLE refusing (on_ INTEGER)")
        db.execute("INSERT INTO refusing VALUES (1)")
        db.execute(
            "CREATE TRIGGER refuse_saves BEFORE UPDATE ON messages"
            " WHEN (SELECT count(*) FROM refusing) > 0"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    with httpx.Client(base_url=app.url, timeout=60) as client:
        sent = client.post("/chat/send", data={**FORM, "content": "Say hi."})
        assert sent.status_code == 200, sent.text
        answer_id = answer_id_of(sent.text)
        with client.stream("GET", f"/messages/{answer_id}/stream") as stream:
            events = [(e.event, e.json()) for e in parse_events(stream.iter_lines())]
        text = "".join(data["text"] for name, data in events if name == "answer")
        name, end = events[-1]
        assert name == "end" and end["status"] == "complete", end
        assert "could not be saved" in end["unsaved"]
        assert "disk is full" in end["unsaved"]
        assert text
        with sqlite3.connect(app.database) as db:
            row = db.execute("SELECT status, content FROM messages WHERE id = ?", (answer_id,))
            assert row.fetchone() == ("streaming", ""), "the trigger let a save through"
        shown = client.get(f"/messages/{answer_id}")
        assert shown.status_code == 200 and "status-complete" in shown.text
        assert "Not saved yet" in shown.text and "disk is full" in shown.text
        with sqlite3.connect(app.database) as db:
            db.execute("DELETE FROM refusing")
        deadline = time.monotonic() + 10
        while True:
            with sqlite3.connect(app.database) as db:
                row = db.execute(
                    "SELECT status, content FROM messages WHERE id = ?", (answer_id,)
                ).fetchone()
            if row == ("complete", text) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert row == ("complete", text)


@pytest.mark.asyncio(loop_scope="function")
async def test_each_side_keeps_an_idle_vllm_connection_as_long_as_it_says(
    dev_stack: DevStack,
) -> None:
    """vLLM closes a connection idle for VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds (5 unless set);
    a chat (a POST, which aiohttp will not retry) must never go out on a connection vLLM is
    closing, so the adapter lets idle connections go sooner. With the default limits the
    adapter lets go at 4 s; the dev stack, like the compose file, raises vLLM's limit to 65 s,
    and an adapter told 60 s then reuses its connection after a pause that vLLM's default
    would have ended (which proves vLLM 0.32 reads the variable)."""
    from duet.devstack import DUET_VLLM_IDLE_SECONDS, VLLM_IDLE_SECONDS
    from duet.engines.openai import VllmEngine
    from duet.settings import Settings

    pause = 6.0  # past vLLM's 5 s default and the adapter's default 4 s
    assert Settings().vllm_connection_idle_seconds < 5.0 < pause
    assert pause < DUET_VLLM_IDLE_SECONDS < VLLM_IDLE_SECONDS
    default = VllmEngine("vllm", "vLLM", dev_stack.vllm_url, TINY_MODEL_NAME)
    raised = VllmEngine(
        "vllm", "vLLM", dev_stack.vllm_url, TINY_MODEL_NAME,
        connection_idle_seconds=DUET_VLLM_IDLE_SECONDS,
    )  # fmt: skip

    async def chat_twice(engine: VllmEngine) -> None:
        for wait in (0.0, pause):
            await asyncio.sleep(wait)
            events = [e async for e in engine.stream_chat(request())]
            assert not [e for e in events if e.kind == "error"], events

    try:
        await asyncio.gather(chat_twice(default), chat_twice(raised))
        assert default.connections_opened == 2, "the adapter let its idle connection go"
        assert raised.connections_opened == 1, "vLLM kept the idle connection for 60 s"
    finally:
        await default.aclose()
        await raised.aclose()
