"""Keeping a key's conversations in its owner's history, for a key whose owner chose that.

Without that choice no text of a `/v1` request is kept anywhere: only its counts and timings
(the usage row `duet.limits` writes). With it, an answer that ended (complete, or stopped when
the client left) is kept as a conversation like the web UI's, once the answer is over, so that
nothing waits on the write: the request's system prompt, its user and assistant turns, and the
answer with its reasoning, engine, model, token counts and timings. The owner finds it in the
sidebar and can read, search, export, share or continue it there.

A tool sends the whole conversation again with every request. A request whose turns begin with
every turn of a conversation kept before (its system prompt the same) continues that one: only
the turns after them, and the new answer, are added, so a chat of many requests is one
conversation here too. Tool calls and their results have no place in the web UI's
conversations and are not kept (an assistant turn that only called a tool is left out).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from duet.api.schema import ChatCompletionRequest
from duet.api.translate import Answer
from duet.engines.base import Sampling
from duet.store import answer_versions, conversations, messages
from duet.store.api_usage import EndStatus
from duet.store.db import transaction
from duet.store.messages import AnswerRecord, Status
from duet.turns import stored_parameters

Turn = tuple[Literal["user", "assistant"], str]
# How many of the owner's latest conversations a request may continue.
CANDIDATES = 20
KEPT: dict[EndStatus, Status] = {"completed": "complete", "stopped": "stopped"}


def system_prompt(body: ChatCompletionRequest) -> str:
    return "\n\n".join(m.text for m in body.messages if m.role in ("system", "developer"))


def turns(body: ChatCompletionRequest) -> list[Turn]:
    """The user and assistant turns with text, in order."""
    found: list[Turn] = []
    for message in body.messages:
        if message.role == "user":
            found.append(("user", message.text))
        elif message.role == "assistant" and message.text:
            found.append(("assistant", message.text))
    return found


def continued(
    db: sqlite3.Connection, user_id: int, system: str, asked: list[Turn]
) -> tuple[int, int] | None:
    """The conversation of `user_id`'s latest whose turns `asked` begins with and goes past
    (the longest such one), and how many turns it holds; None if there is none."""
    best: tuple[int, int] | None = None
    for conversation in conversations.list_conversations(db, user_id, limit=CANDIDATES):
        if conversation.system_prompt != system:
            continue
        # The conversation as it goes on: each question and its chosen answer, no other version.
        path = answer_versions.shown_path(db, conversation.id)
        stored = [(m.role, m.content) for m in path]
        begins = 0 < len(stored) < len(asked) and asked[: len(stored)] == stored
        if begins and (best is None or len(stored) > best[1]):
            best = (conversation.id, len(stored))
    return best


@dataclass(frozen=True, slots=True)
class Kept:
    """What the history needs of a request, besides its answer."""

    user_id: int
    body: ChatCompletionRequest
    engine: str
    model: str
    sampling: Sampling

    def parameters(self) -> dict[str, Any]:
        """The answer's parameters as the web UI stores them with its own answers."""
        return stored_parameters(self.sampling, self.body.thinking)

    def keep(
        self,
        db: sqlite3.Connection,
        status: EndStatus,
        answer: Answer,
        ttft_ms: float | None,
        total_ms: float,
    ) -> int | None:
        """Keep the request and its answer; the conversation's id, or None for an answer that
        failed (nothing to read) or a request with no question."""
        kept_status = KEPT.get(status)
        asked = turns(self.body)
        if kept_status is None or not any(role == "user" for role, _ in asked):
            return None
        system = system_prompt(self.body)
        usage = answer.usage
        record = AnswerRecord(
            kept_status,
            content="".join(answer.content),
            reasoning="".join(answer.reasoning),
            finish_reason=answer.done.finish_reason if answer.done else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            ttft_ms=ttft_ms,
            total_ms=total_ms,
        )
        with transaction(db):
            found = continued(db, self.user_id, system, asked)
            if found is None:
                first = next(text for role, text in asked if role == "user")
                title = conversations.title_from_text(first)
                conversation_id = conversations.create_conversation(
                    db, self.user_id, title, system
                ).id
                known = 0
            else:
                conversation_id, known = found
            for role, text in asked[known:]:
                if role == "user":
                    messages.add_user_message(db, conversation_id, text)
                else:
                    # An earlier answer the tool sends back: how it was made is not known.
                    earlier = AnswerRecord("complete", content=text)
                    self.add_answer(db, conversation_id, earlier, {})
            self.add_answer(db, conversation_id, record, self.parameters())
            conversations.touch_conversation(db, conversation_id)
        return conversation_id

    def add_answer(
        self,
        db: sqlite3.Connection,
        conversation_id: int,
        record: AnswerRecord,
        parameters: dict[str, Any],
    ) -> None:
        answer = messages.start_assistant_message(
            db,
            conversation_id,
            engine=self.engine,
            model=self.model,
            thinking=self.body.thinking,
            parameters=parameters,
        )
        messages.save_assistant(db, answer.id, record)
