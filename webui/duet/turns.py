"""Starting an answer: from a conversation to a running generation and its stored turn.

Shared by send, regenerate, edit-and-resend and compare, which differ only in what they change
in the conversation for the answer (`answering`'s block).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import EngineName
from duet.generation import Generation, Generations
from duet.store.conversations import set_system_prompt, touch_conversation
from duet.store.db import transaction
from duet.store.messages import Message, list_messages, start_assistant_message


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """How to generate an answer: which engine, thinking or not, and the sampling."""

    engine: EngineName
    thinking: bool
    sampling: Sampling
    system_prompt: str

    def parameters(self) -> dict[str, Any]:
        """The parameters as stored with the answer (and shown in exports)."""
        return {
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "top_k": self.sampling.top_k,
            "max_tokens": self.sampling.max_tokens,
            "thinking": self.thinking,
        }


def chat_messages(
    history: Sequence[Message], system_prompt: str, new_message: str | None = None
) -> tuple[ChatMessage, ...]:
    """What the engine is sent: the system prompt, the history, and the user's new message if
    it is not stored yet. Answers that produced no text (failed before the first token) are
    left out; stopped and failed answers with text are part of the conversation."""
    sent: list[ChatMessage] = []
    if system_prompt.strip():
        sent.append(ChatMessage(role="system", content=system_prompt))
    for message in history:
        if message.role == "user":
            sent.append(ChatMessage(role="user", content=message.content))
        elif message.content:
            sent.append(
                ChatMessage(
                    role="assistant", content=message.content, reasoning=message.reasoning or None
                )
            )
    if new_message is not None:
        sent.append(ChatMessage(role="user", content=new_message))
    return tuple(sent)


# How long `answering` waits for the engine request to leave. A warm loopback engine takes
# about a millisecond (a fresh connection a few more); the bound matters only when the engine
# cannot be reached quickly (a connect that hangs), and then the caller goes on without it.
REQUEST_SENT_WAIT_SECONDS = 0.25


@dataclass(slots=True)
class Turn:
    """What `answering` hands its block: the running generation, and the conversation the
    answer goes into (the block sets it when it creates the conversation)."""

    generation: Generation
    conversation_id: int | None


@asynccontextmanager
async def answering(
    db: sqlite3.Connection,
    generations: Generations,
    engine: Engine,
    options: TurnOptions,
    received: float,
    messages: tuple[ChatMessage, ...],
    conversation_id: int | None,
) -> AsyncIterator[Turn]:
    """Send the engine request first, then store the turn, in one transaction.

    The block runs once the request is on the wire (or after REQUEST_SENT_WAIT_SECONDS), inside
    the transaction, so it must not await (another task's writes would join it): it
    writes whatever the caller changes (a new conversation, the user's message, a deletion) and
    sets `turn.conversation_id` if it created the conversation; then the answer's `streaming`
    row is written and the generation attached to it. Storing, and everything the caller does
    afterwards such as rendering the page, so happen while the engine works on its first token
    instead of before its request leaves (they would be added to the user's time to first
    token). If the block or the writes fail, nothing is stored and the request is cancelled.

    `received` is perf_counter() when Duet received the request asking for this answer;
    `messages` is what the engine is sent (`chat_messages`)."""
    request = ChatRequest(messages=messages, thinking=options.thinking, sampling=options.sampling)
    generation = generations.launch(engine, request, received, conversation_id)
    turn = Turn(generation, conversation_id)
    try:
        # Cancelled here (a server shutting down), the request is cancelled too: a launched
        # generation is always either attached to its row or abandoned.
        await generation.wait_sent(REQUEST_SENT_WAIT_SECONDS)
        with transaction(db):
            yield turn
            if turn.conversation_id is None:
                raise RuntimeError("the answering block stored no conversation")
            set_system_prompt(db, turn.conversation_id, options.system_prompt)
            answer = start_assistant_message(
                db,
                turn.conversation_id,
                engine=engine.name,
                model=engine.model,
                thinking=options.thinking,
                parameters=options.parameters(),
            )
            touch_conversation(db, turn.conversation_id)
    except BaseException:
        generations.abandon(generation)
        raise
    generations.attach(generation, turn.conversation_id, answer.id)


async def send_answer(
    db: sqlite3.Connection,
    generations: Generations,
    conversation_id: int,
    engine: Engine,
    options: TurnOptions,
    received: float,
) -> Generation:
    """Answer the conversation as stored (see `answering`)."""
    history = list_messages(db, conversation_id)
    messages = chat_messages(history, options.system_prompt)
    async with answering(
        db, generations, engine, options, received, messages, conversation_id
    ) as turn:
        pass
    return turn.generation
