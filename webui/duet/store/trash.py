"""The trash: conversations their owner deleted, kept for a while so that a delete can be undone.

A conversation in the trash has `deleted_at` set (m013). Every query that shows or continues a
conversation (`conversations.get_conversation`, the sidebar, search, and through them a share
link, an export, the chat page, /v1's kept history) leaves it out; only the queries here see
it. Each names the owner, so no one sees, restores or deletes another user's trash.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from duet.store.conversations import Conversation, from_row
from duet.store.db import now_iso

log = logging.getLogger(__name__)

# How often conversations past their time in the trash are deleted, besides at start-up.
PURGE_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Trashed:
    conversation: Conversation
    deleted_at: str
    # When it will be deleted for good (ISO 8601, UTC).
    purge_at: str
    message_count: int


def move_to_trash(db: sqlite3.Connection, user_id: int, conversation_id: int) -> bool:
    """False when the owner has no such conversation out of the trash."""
    cursor = db.execute(
        "UPDATE conversations SET deleted_at = ?"
        " WHERE id = ? AND user_id = ? AND deleted_at IS NULL",
        (now_iso(), conversation_id, user_id),
    )
    return cursor.rowcount == 1


def restore(db: sqlite3.Connection, user_id: int, conversation_id: int) -> bool:
    """Take a conversation out of the trash, back where it was in the sidebar (its last write
    is unchanged). False when the owner has no such conversation in the trash."""
    cursor = db.execute(
        "UPDATE conversations SET deleted_at = NULL"
        " WHERE id = ? AND user_id = ? AND deleted_at IS NOT NULL",
        (conversation_id, user_id),
    )
    return cursor.rowcount == 1


def delete_forever(db: sqlite3.Connection, user_id: int, conversation_id: int) -> bool:
    """Delete a conversation in the trash for good. Its messages go with it (ON DELETE
    CASCADE), and their search index rows with them (triggers)."""
    cursor = db.execute(
        "DELETE FROM conversations WHERE id = ? AND user_id = ? AND deleted_at IS NOT NULL",
        (conversation_id, user_id),
    )
    return cursor.rowcount == 1


def empty_trash(db: sqlite3.Connection, user_id: int, deleted_by: str) -> int:
    """Delete for good the owner's conversations that went to the trash at or before
    `deleted_by` (ISO 8601, as the trash page shows its newest): one deleted after the page was
    drawn, in another tab, was never on it, and stays. How many were deleted."""
    cursor = db.execute(
        "DELETE FROM conversations"
        " WHERE user_id = ? AND deleted_at IS NOT NULL AND deleted_at <= ?",
        (user_id, deleted_by),
    )
    return cursor.rowcount


TRASHED_COLUMNS = (
    "conversations.*,"
    " (SELECT count(*) FROM messages WHERE conversation_id = conversations.id) AS message_count"
)


def _trashed(row: sqlite3.Row, days: float) -> Trashed:
    deleted = datetime.fromisoformat(row["deleted_at"])
    purge_at = (deleted + timedelta(days=days)).isoformat(timespec="seconds")
    return Trashed(from_row(row), row["deleted_at"], purge_at, row["message_count"])


def get_trashed(
    db: sqlite3.Connection, user_id: int, conversation_id: int, days: float
) -> Trashed | None:
    """One of the owner's conversations in the trash; `days` is how long the trash keeps it."""
    row = db.execute(
        f"SELECT {TRASHED_COLUMNS} FROM conversations"
        " WHERE id = ? AND user_id = ? AND deleted_at IS NOT NULL",
        (conversation_id, user_id),
    ).fetchone()
    return None if row is None else _trashed(row, days)


def list_trash(db: sqlite3.Connection, user_id: int, days: float) -> list[Trashed]:
    """The owner's conversations in the trash, the latest deleted first."""
    rows = db.execute(
        f"SELECT {TRASHED_COLUMNS} FROM conversations"
        " WHERE user_id = ? AND deleted_at IS NOT NULL ORDER BY deleted_at DESC, id DESC",
        (user_id,),
    )
    return [_trashed(row, days) for row in rows]


def purge_expired(db: sqlite3.Connection, days: float, now: datetime | None = None) -> int:
    """Delete for good every conversation in the trash for longer than `days`; how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    cursor = db.execute(
        "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < ?",
        (cutoff.isoformat(timespec="microseconds"),),
    )
    if cursor.rowcount:
        log.info("deleted %d conversations after %g days in the trash", cursor.rowcount, days)
    return cursor.rowcount


async def keep_purging(
    db: sqlite3.Connection, days: float, interval: float = PURGE_INTERVAL_SECONDS
) -> None:
    """Purge the trash every `interval` seconds, for as long as the server runs. A purge the
    database refuses (full disk, a lock held too long) is tried again at the next one."""
    while True:
        await asyncio.sleep(interval)
        try:
            purge_expired(db, days)
        except sqlite3.Error as error:
            log.error("the trash could not be purged: %s", error)
