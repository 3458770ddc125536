"""The server clock of an answer starts when its engine request is on the wire (real Ollama).

Duet stamps every event of an answer relative to the moment the engine request's last byte was
written (the `sent` event), so that Duet's own time before that is never charged to the engine.
Checked against the session's real Ollama: the stamp falls after Duet received the request and
before the first token arrived, and the adapter reads each response to its end, so the next
request reuses the same connection (a reconnect would add its cost to every TTFT). The request
also leaves before Duet stores the turn, and a turn that cannot be stored cancels it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from duet.devstack import TINY_MODEL_NAME, DevStack
from duet.engines.base import ChatMessage, ChatRequest, Sampling
from duet.engines.ollama import OllamaEngine
from duet.generation import Generations
from duet.store import conversations, messages
from duet.store.db import open_database
from duet.turns import TurnOptions, answering, chat_messages

pytestmark = [pytest.mark.engines, pytest.mark.asyncio(loop_scope="function")]


def request() -> ChatRequest:
    sampling = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=8)
    return ChatRequest(
        messages=(ChatMessage(role="user", content="hi"),), thinking=False, sampling=sampling
    )


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
            names = [event.name for event in generation.events]
            assert names[0] == "sent"
            assert names[-1] == "end" and generation.outcome.status == "complete"
            assert received <= generation.started
            sent = generation.events[0].data
            assert sent["after_receipt_ms"] == pytest.approx(
                (generation.started - received) * 1000, abs=0.01
            )
            # Every token arrived after the request was on the wire.
            text_ts = [e.data["t"] for e in generation.events if e.name == "answer"]
            assert text_ts and all(t > 0 for t in text_ts)
        # The first response was read to its end, so the second request reused its connection.
        assert engine.connections_opened == 1
    finally:
        await engine.aclose()
        db.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager task start is Python 3.12+")
async def test_on_a_warm_connection_the_request_is_on_the_wire_when_launch_returns(
    dev_stack: DevStack, tmp_path: Path
) -> None:
    """The answer's task starts eagerly (`generation.start_task`): with a kept-alive connection
    to the engine nothing on the way to the wire waits, so the request has left before `launch`
    returns, and no turn of the event loop sits between the view and the engine request."""
    engine = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, TINY_MODEL_NAME)
    db: sqlite3.Connection = open_database(tmp_path / "duet.sqlite3")
    generations = Generations(db)
    conversation = conversations.create_conversation(db, 1, "t")
    on_the_wire_at_return = []
    try:
        for _ in range(2):  # the first request opens the connection, which waits
            answer = messages.start_assistant_message(
                db, conversation.id, engine="ollama", model=TINY_MODEL_NAME, thinking=False,
                parameters={},
            )  # fmt: skip
            generation = generations.start(
                answer.id, conversation.id, engine, request(), time.perf_counter()
            )
            on_the_wire_at_return.append(generation.sent.is_set())
            assert generation.task is not None
            await generation.task
            assert generation.outcome.status == "complete"
        assert on_the_wire_at_return == [False, True]
        assert engine.connections_opened == 1
    finally:
        await engine.aclose()
        db.close()


async def test_the_request_leaves_before_the_turn_is_stored(
    dev_stack: DevStack, tmp_path: Path
) -> None:
    """`answering` runs its block (the caller's writes) once the engine request is on the wire;
    if the block fails, nothing is stored and the request is cancelled."""
    engine = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, TINY_MODEL_NAME)
    db: sqlite3.Connection = open_database(tmp_path / "duet.sqlite3")
    generations = Generations(db)
    options = TurnOptions(
        engine="ollama", thinking=False, sampling=request().sampling, system_prompt=""
    )
    to_engine = chat_messages([], "", new_message="hi")
    try:
        async with answering(
            db, generations, engine, options, time.perf_counter(), to_engine, None
        ) as turn:
            assert turn.generation.sent.is_set(), "the block ran before the request left"
            assert turn.generation.message_id is None
            conversation = conversations.create_conversation(db, 1, "kept")
            messages.add_user_message(db, conversation.id, "hi")
            turn.conversation_id = conversation.id
        generation = turn.generation
        assert generation.message_id is not None and generation.task is not None
        await generation.task
        stored = messages.list_messages(db, conversation.id)
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].status == "complete" and stored[1].content

        with pytest.raises(ValueError, match="cannot store"):
            async with answering(
                db, generations, engine, options, time.perf_counter(), to_engine, None
            ) as turn:
                conversations.create_conversation(db, 1, "rolled back")
                raise ValueError("cannot store")
        abandoned = turn.generation
        assert abandoned.task is not None
        await asyncio.wait({abandoned.task}, timeout=10)
        assert abandoned.task.cancelled()
        assert abandoned.message_id is None and not generations.starting
        titles = [c.title for c in conversations.list_conversations(db, 1)]
        assert titles == ["kept"]
    finally:
        await engine.aclose()
        db.close()
