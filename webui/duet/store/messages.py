"""Queries about messages.

An assistant message is written when its generation starts (status `streaming`), updated with
its text as the stream goes, and finished with one of `complete`, `stopped` or `failed`. A row
still `streaming` when the app starts belonged to a run that died: `mark_interrupted` closes it,
keeping whatever text was saved.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from duet.store.db import now_iso

Status = Literal["streaming", "complete", "stopped", "failed", "interrupted"]
FINAL_STATUSES: tuple[Status, ...] = ("complete", "stopped", "failed", "interrupted")


class Arrival(NamedTuple):
    """When one text-carrying stream event reached a hop (the server, or the browser).

    Stored as a JSON list `[ms, chunk, kind, chars]`, one per event, in arrival order."""

    ms: float  # since this hop's start of the answer (the server's: its request on the wire)
    chunk: int  # the upstream chunk it came in (events of one chunk share it)
    kind: Literal["r", "a"]  # reasoning or answer text
    chars: int  # how much text it carried


def arrivals_json(arrivals: Sequence[Arrival]) -> str:
    return json.dumps(arrivals, separators=(",", ":"))


def arrivals_from_json(raw: str) -> list[Arrival]:
    return [Arrival(*entry) for entry in json.loads(raw)]


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    conversation_id: int
    role: Literal["user", "assistant"]
    content: str
    reasoning: str
    engine: str | None
    model: str | None
    thinking: bool | None
    parameters: dict[str, Any]
    status: Status
    error: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft_ms: float | None
    ttfa_ms: float | None
    total_ms: float | None
    engine_timings: dict[str, float]
    arrivals: list[Arrival]
    created_at: str
    updated_at: str

    @property
    def tokens_per_second(self) -> float | None:
        """Decode speed after the first token, the way `vllm bench serve` counts it."""
        if not self.completion_tokens or self.completion_tokens < 2:
            return None
        if self.total_ms is None or self.ttft_ms is None or self.total_ms <= self.ttft_ms:
            return None
        return (self.completion_tokens - 1) / ((self.total_ms - self.ttft_ms) / 1000)


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """What is saved of an assistant answer: at a save point while it streams, and at its end."""

    status: Status
    content: str = ""
    reasoning: str = ""
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    ttfa_ms: float | None = None
    total_ms: float | None = None
    engine_timings: dict[str, float] = field(default_factory=dict)
    arrivals: Sequence[Arrival] = ()


def with_record(message: Message, record: AnswerRecord) -> Message:
    """The message as `record` says it is (an answer held in memory that could not be saved)."""
    return replace(
        message,
        status=record.status,
        content=record.content,
        reasoning=record.reasoning,
        error=record.error,
        finish_reason=record.finish_reason,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        ttft_ms=record.ttft_ms,
        ttfa_ms=record.ttfa_ms,
        total_ms=record.total_ms,
        engine_timings=dict(record.engine_timings),
        arrivals=list(record.arrivals),
    )


def from_row(row: sqlite3.Row) -> Message:
    thinking = row["thinking"]
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        reasoning=row["reasoning"],
        engine=row["engine"],
        model=row["model"],
        thinking=None if thinking is None else bool(thinking),
        parameters=json.loads(row["parameters"]),
        status=row["status"],
        error=row["error"],
        finish_reason=row["finish_reason"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        ttft_ms=row["ttft_ms"],
        ttfa_ms=row["ttfa_ms"],
        total_ms=row["total_ms"],
        engine_timings=json.loads(row["engine_timings"]),
        arrivals=arrivals_from_json(row["arrivals"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def add_user_message(db: sqlite3.Connection, conversation_id: int, content: str) -> Message:
    stamp = now_iso()
    row = db.execute(
        "INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at)"
        " VALUES (?, 'user', ?, 'complete', ?, ?) RETURNING *",
        (conversation_id, content, stamp, stamp),
    ).fetchone()
    return from_row(row)


def start_assistant_message(
    db: sqlite3.Connection,
    conversation_id: int,
    *,
    engine: str,
    model: str,
    thinking: bool,
    parameters: dict[str, Any],
) -> Message:
    stamp = now_iso()
    row = db.execute(
        """
        INSERT INTO messages (
            conversation_id, role, engine, model, thinking, parameters, status,
            created_at, updated_at
        ) VALUES (?, 'assistant', ?, ?, ?, ?, 'streaming', ?, ?)
        RETURNING *
        """,
        (conversation_id, engine, model, int(thinking), json.dumps(parameters), stamp, stamp),
    ).fetchone()
    return from_row(row)


def save_assistant(db: sqlite3.Connection, message_id: int, outcome: AnswerRecord) -> None:
    """Write the answer as it stands; called at save points while streaming and once at the end."""
    db.execute(
        """
        UPDATE messages SET
            status = ?, content = ?, reasoning = ?, error = ?, finish_reason = ?,
            prompt_tokens = ?, completion_tokens = ?, ttft_ms = ?, ttfa_ms = ?, total_ms = ?,
            engine_timings = ?, arrivals = ?, updated_at = ?
        WHERE id = ?
        """,
        (
            outcome.status,
            outcome.content,
            outcome.reasoning,
            outcome.error,
            outcome.finish_reason,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            outcome.ttft_ms,
            outcome.ttfa_ms,
            outcome.total_ms,
            json.dumps(outcome.engine_timings),
            arrivals_json(outcome.arrivals),
            now_iso(),
            message_id,
        ),
    )


def update_user_message(db: sqlite3.Connection, message_id: int, content: str) -> None:
    db.execute(
        "UPDATE messages SET content = ?, updated_at = ? WHERE id = ? AND role = 'user'",
        (content, now_iso(), message_id),
    )


def get_message(db: sqlite3.Connection, message_id: int) -> Message | None:
    row = db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else from_row(row)


def require_message(db: sqlite3.Connection, message_id: int) -> Message:
    message = get_message(db, message_id)
    if message is None:
        raise LookupError(f"no message {message_id}")
    return message


def message_owner(db: sqlite3.Connection, message_id: int) -> int | None:
    """The id of the user whose conversation holds the message."""
    row = db.execute(
        "SELECT conversations.user_id FROM messages"
        " JOIN conversations ON conversations.id = messages.conversation_id"
        " WHERE messages.id = ?",
        (message_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def list_messages(db: sqlite3.Connection, conversation_id: int) -> list[Message]:
    rows = db.execute(
        "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
    )
    return [from_row(row) for row in rows]


def delete_messages_from(db: sqlite3.Connection, conversation_id: int, message_id: int) -> int:
    """Delete a message and every later one in its conversation; return how many went."""
    cursor = db.execute(
        "DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (conversation_id, message_id)
    )
    return cursor.rowcount


def mark_interrupted(db: sqlite3.Connection) -> int:
    """Close answers left `streaming` by a previous run; return how many."""
    cursor = db.execute(
        "UPDATE messages SET status = 'interrupted',"
        " error = COALESCE(error, 'The server stopped while this answer was streaming.'),"
        " updated_at = ? WHERE status = 'streaming'",
        (now_iso(),),
    )
    return cursor.rowcount
