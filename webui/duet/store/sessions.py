"""Sign-in sessions, kept server-side: a row per session, found by the SHA-256 of its token.

Times are ISO 8601 in UTC, like every stamp in the store, so they compare as text.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from duet.store.db import now_iso


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    user_id: int
    created_at: str
    last_seen_at: str
    expires_at: str
    user_agent: str
    address: str


def from_row(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        user_agent=row["user_agent"],
        address=row["address"],
    )


def create_session(
    db: sqlite3.Connection,
    user_id: int,
    token_hash: str,
    expires_at: str,
    user_agent: str,
    address: str,
) -> Session:
    stamp = now_iso()
    row = db.execute(
        "INSERT INTO sessions (user_id, token_hash, created_at, last_seen_at, expires_at,"
        " user_agent, address) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
        (user_id, token_hash, stamp, stamp, expires_at, user_agent[:300], address),
    ).fetchone()
    return from_row(row)


def find_session(db: sqlite3.Connection, token_hash: str) -> Session | None:
    row = db.execute("SELECT * FROM sessions WHERE token_hash = ?", (token_hash,)).fetchone()
    return None if row is None else from_row(row)


def touch_session(db: sqlite3.Connection, session_id: int, stamp: str) -> None:
    db.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (stamp, session_id))


def delete_session(db: sqlite3.Connection, session_id: int, user_id: int | None = None) -> bool:
    """End one session (only if it is `user_id`'s, when given)."""
    if user_id is None:
        cursor = db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    else:
        cursor = db.execute(
            "DELETE FROM sessions WHERE id = ? AND user_id = ?", (session_id, user_id)
        )
    return cursor.rowcount > 0


def delete_user_sessions(db: sqlite3.Connection, user_id: int, keep: int | None = None) -> int:
    """End every session of a user (but `keep`, the one making the change, when given)."""
    cursor = db.execute("DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?", (user_id, keep))
    return cursor.rowcount


def list_sessions(db: sqlite3.Connection, user_id: int | None = None) -> list[Session]:
    """Sessions of one user, or of everyone (for admins), newest activity first."""
    if user_id is None:
        rows = db.execute("SELECT * FROM sessions ORDER BY last_seen_at DESC")
    else:
        rows = db.execute(
            "SELECT * FROM sessions WHERE user_id = ? ORDER BY last_seen_at DESC", (user_id,)
        )
    return [from_row(row) for row in rows]


def delete_expired(db: sqlite3.Connection, idle_before: str, now: str) -> int:
    cursor = db.execute(
        "DELETE FROM sessions WHERE last_seen_at < ? OR expires_at < ?", (idle_before, now)
    )
    return cursor.rowcount
