"""Queries about conversations: plain functions over a connection, scoped to a user."""

from __future__ import annotations

import sqlite3
import unicodedata
from dataclasses import dataclass

from duet.store.db import now_iso, transaction

TITLE_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    user_id: int
    title: str
    system_prompt: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation: Conversation
    # A piece of the matching message with the matched words between MATCH_START and MATCH_END,
    # so the view can escape the text first and mark the words after.
    snippet: str


MATCH_START = "\x02"
MATCH_END = "\x03"


def from_row(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        user_id=row["user_id"],
        title=row["title"],
        system_prompt=row["system_prompt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def title_from_text(text: str) -> str:
    """A first title: the start of the first message, on one line."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= 60 else one_line[:59].rstrip() + "…"


def create_conversation(
    db: sqlite3.Connection, user_id: int, title: str, system_prompt: str = ""
) -> Conversation:
    stamp = now_iso()
    row = db.execute(
        "INSERT INTO conversations (user_id, title, system_prompt, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING *",
        (user_id, title, system_prompt, stamp, stamp),
    ).fetchone()
    return from_row(row)


def get_conversation(
    db: sqlite3.Connection, user_id: int, conversation_id: int
) -> Conversation | None:
    row = db.execute(
        "SELECT * FROM conversations WHERE id = ? AND user_id = ?", (conversation_id, user_id)
    ).fetchone()
    return None if row is None else from_row(row)


def list_conversations(
    db: sqlite3.Connection, user_id: int, limit: int = 200
) -> list[Conversation]:
    rows = db.execute(
        "SELECT * FROM conversations WHERE user_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?",
        (user_id, limit),
    )
    return [from_row(row) for row in rows]


def rename_conversation(
    db: sqlite3.Connection, user_id: int, conversation_id: int, title: str
) -> bool:
    cursor = db.execute(
        "UPDATE conversations SET title = ? WHERE id = ? AND user_id = ?",
        (title, conversation_id, user_id),
    )
    return cursor.rowcount == 1


def set_system_prompt(db: sqlite3.Connection, conversation_id: int, system_prompt: str) -> None:
    db.execute(
        "UPDATE conversations SET system_prompt = ? WHERE id = ?", (system_prompt, conversation_id)
    )


def touch_conversation(db: sqlite3.Connection, conversation_id: int) -> None:
    """Move a conversation to the top of the sidebar."""
    db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now_iso(), conversation_id))


def answered_with(db: sqlite3.Connection, conversation_id: int, system_prompt: str) -> None:
    """A new answer was started with this system prompt: keep it, and move the conversation to
    the top of the sidebar."""
    db.execute(
        "UPDATE conversations SET system_prompt = ?, updated_at = ? WHERE id = ?",
        (system_prompt, now_iso(), conversation_id),
    )


def delete_conversation(db: sqlite3.Connection, user_id: int, conversation_id: int) -> bool:
    # Messages go with it (ON DELETE CASCADE), and their FTS rows with them (trigger).
    cursor = db.execute(
        "DELETE FROM conversations WHERE id = ? AND user_id = ?", (conversation_id, user_id)
    )
    return cursor.rowcount == 1


def fork_conversation(
    db: sqlite3.Connection, user_id: int, conversation_id: int, before_message_id: int
) -> Conversation:
    """A new conversation holding copies of the messages before `before_message_id`.

    Editing an earlier message resends from a fork, so the original conversation, and every later
    message the user wrote in it, stays as it was.
    """
    source = get_conversation(db, user_id, conversation_id)
    if source is None:
        raise LookupError(f"no conversation {conversation_id}")
    with transaction(db):
        fork = create_conversation(db, user_id, f"{source.title} (edited)", source.system_prompt)
        db.execute(
            """
            INSERT INTO messages (
                conversation_id, role, content, reasoning, engine, model, thinking, parameters,
                status, error, finish_reason, prompt_tokens, completion_tokens, ttft_ms, ttfa_ms,
                total_ms, engine_timings, arrivals, created_at, updated_at
            )
            SELECT
                ?, role, content, reasoning, engine, model, thinking, parameters,
                status, error, finish_reason, prompt_tokens, completion_tokens, ttft_ms, ttfa_ms,
                total_ms, engine_timings, arrivals, created_at, updated_at
            FROM messages WHERE conversation_id = ? AND id < ? ORDER BY id
            """,
            (fork.id, conversation_id, before_message_id),
        )
    return fork


def fts_query(text: str) -> str:
    """Turn what a person typed into an FTS5 query: every word must appear, the last one may be
    the start of a word. Each word is quoted, so FTS5 operators and stray quotes are plain text.

    Control characters and lone surrogates separate words: SQLite reads a NUL as the end of the
    query (an unterminated string), a surrogate has no UTF-8 at all, and FTS5's tokenizer splits
    words at control characters in the indexed text too."""
    words = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text).split()
    if not words:
        return ""
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def search_conversations(
    db: sqlite3.Connection, user_id: int, text: str, limit: int = 50
) -> list[SearchHit]:
    """Conversations with a message matching `text`, best match first, one hit per conversation."""
    query = fts_query(text)
    if not query:
        return []
    rows = db.execute(
        """
        SELECT conversations.*, snippet(messages_fts, -1, ?, ?, '…', 12) AS snippet
        FROM messages_fts
        JOIN messages ON messages.id = messages_fts.rowid
        JOIN conversations ON conversations.id = messages.conversation_id
        WHERE messages_fts MATCH ? AND conversations.user_id = ?
        ORDER BY messages_fts.rank
        LIMIT ?
        """,
        # Matches are messages; several can come from one conversation.
        (MATCH_START, MATCH_END, query, user_id, limit * 10),
    )
    hits: dict[int, SearchHit] = {}
    for row in rows:
        if row["id"] not in hits:
            hits[row["id"]] = SearchHit(conversation=from_row(row), snippet=row["snippet"])
    return list(hits.values())[:limit]
