"""Starting an answer: from a conversation's stored messages to a running generation.

Shared by send, regenerate and edit-and-resend, which differ only in what they change in the
conversation before the answer starts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import EngineName
from duet.generation import Generation, Generations
from duet.store.conversations import set_system_prompt, touch_conversation
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


def chat_messages(history: Sequence[Message], system_prompt: str) -> tuple[ChatMessage, ...]:
    """What the engine is sent. Answers that produced no text (failed before the first token)
    are left out; stopped and failed answers with text are part of the conversation."""
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
    return tuple(sent)


def start_answer(
    db: sqlite3.Connection,
    generations: Generations,
    conversation_id: int,
    engine: Engine,
    options: TurnOptions,
    received: float,
) -> Generation:
    """Answer the conversation as stored: write the `streaming` row, then start the task.

    `received` is perf_counter() when Duet received the request asking for this answer. The
    task's engine request has not left yet when this returns: a caller with more work to do on
    the event loop awaits `generation.wait_sent(...)` first (see views/chat.py)."""
    set_system_prompt(db, conversation_id, options.system_prompt)
    history = list_messages(db, conversation_id)
    message = start_assistant_message(
        db,
        conversation_id,
        engine=engine.name,
        model=engine.model,
        thinking=options.thinking,
        parameters=options.parameters(),
    )
    touch_conversation(db, conversation_id)
    request = ChatRequest(
        messages=chat_messages(history, options.system_prompt),
        thinking=options.thinking,
        sampling=options.sampling,
    )
    return generations.start(message.id, conversation_id, engine, request, received)


# How long `send_answer` waits for the engine request to leave. A warm loopback engine takes
# about a millisecond (a fresh connection a few more); the bound matters only when the engine
# cannot be reached quickly (a connect that hangs), and then the caller goes on without it.
REQUEST_SENT_WAIT_SECONDS = 0.25


async def send_answer(
    db: sqlite3.Connection,
    generations: Generations,
    conversation_id: int,
    engine: Engine,
    options: TurnOptions,
    received: float,
) -> Generation:
    """`start_answer`, then wait (briefly) until the engine request is on the wire.

    The answer's task runs on the caller's event loop. Without this wait it could not send its
    request before the caller gave the loop back, i.e. after a view had rendered its whole
    response: that rendering would be added to the user's time to first token. Waiting costs
    nothing extra (the request has to leave anyway) and puts the rendering in the time the
    engine spends on its first token."""
    generation = start_answer(db, generations, conversation_id, engine, options, received)
    await generation.wait_sent(REQUEST_SENT_WAIT_SECONDS)
    return generation
