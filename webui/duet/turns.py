"""Starting an answer: store first, then launch.

Send, regenerate, edit-and-resend and compare each change the conversation in their own way
(a new user message, a deleted answer, a fork), and in the same short transaction store the
answer's row with `store_answer_row`; once that has committed, `start_answer` sends the engine
request. So every answer has its row before its engine is asked, and nothing waits for a row
that may not come.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import EngineName
from duet.generation import Generation, Generations
from duet.limits import admit_answer
from duet.store import search_index
from duet.store.conversations import answered_with
from duet.store.messages import Message, start_assistant_message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """How to generate an answer: which engine, thinking or not, and the sampling."""

    engine: EngineName
    thinking: bool
    sampling: Sampling
    system_prompt: str

    def parameters(self) -> dict[str, Any]:
        return stored_parameters(self.sampling, self.thinking)


def stored_parameters(sampling: Sampling, thinking: bool) -> dict[str, Any]:
    """An answer's parameters as stored with it (and shown in exports), however it was asked
    for: the web UI's composer or a /v1 request kept in its owner's history."""
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_tokens": sampling.max_tokens,
        "thinking": thinking,
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


# How long `start_answer` waits for the engine request to leave. A warm loopback engine takes
# about a millisecond (a fresh connection a few more); the bound matters only when the engine
# cannot be reached quickly (a connect that hangs), and then the caller goes on without it.
REQUEST_SENT_WAIT_SECONDS = 0.25


def store_answer_row(
    db: sqlite3.Connection, conversation_id: int, engine: Engine, options: TurnOptions
) -> Message:
    """The answer's row (status `streaming`), with the conversation's system prompt and its
    place in the sidebar updated. Call it in the caller's transaction, beside its own writes:
    a user over one of their limits gets `limits.OverLimit`, which rolls all of them back."""
    admit_answer(db, conversation_id)
    answered_with(db, conversation_id, options.system_prompt)
    return start_assistant_message(
        db,
        conversation_id,
        engine=engine.name,
        model=engine.model,
        thinking=options.thinking,
        parameters=options.parameters(),
    )


async def start_answer(
    generations: Generations,
    answer: Message,
    engine: Engine,
    options: TurnOptions,
    messages: tuple[ChatMessage, ...],
    received: float,
) -> Generation:
    """Generate `answer` (a stored row) from `messages` (see `chat_messages`), and return once
    the engine request is on the wire, or after REQUEST_SENT_WAIT_SECONDS: whatever the caller
    does next, such as rendering the page, then overlaps the engine's work on its first token
    instead of delaying the request. `received`: perf_counter() when Duet received the request
    that asked for this answer."""
    request = ChatRequest(messages=messages, thinking=options.thinking, sampling=options.sampling)
    generation = generations.start(answer.id, answer.conversation_id, engine, request, received)
    await generation.wait_sent(REQUEST_SENT_WAIT_SECONDS)
    # The message that asked for this answer, off the way to the engine (store/search_index.py).
    # Derived rows: a database that refuses them now gets them at the next catch-up, and the
    # answer, already under way, goes on.
    try:
        search_index.catch_up(generations.db)
    except sqlite3.Error:
        log.exception("indexing new messages for search")
    return generation
