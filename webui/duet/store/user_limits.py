"""Limits per user (table `user_limits`): the defaults an admin sets, and overrides per user.

The row whose user_id is NULL holds the defaults. A user's own row replaces them as a whole: each
of its three values holds for that user, NULL meaning no limit, so an admin can free one person
of a limit everyone else has. Without a row of their own a user has the defaults; without a
defaults row, no limits. `duet.limits` applies them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, dataclass

from duet.store.db import now_iso, transaction


@dataclass(frozen=True, slots=True)
class LimitValues:
    """Three limits; None is no limit."""

    max_concurrent: int | None = None  # answers streaming at once
    requests_per_minute: int | None = None  # answers started in any 60 s
    tokens_per_day: int | None = None  # completion tokens of answers started since 00:00 UTC

    @property
    def none(self) -> bool:
        return all(value is None for value in astuple(self))


NO_LIMITS = LimitValues()
COLUMNS = "max_concurrent, requests_per_minute, tokens_per_day"


def from_row(row: sqlite3.Row) -> LimitValues:
    return LimitValues(row["max_concurrent"], row["requests_per_minute"], row["tokens_per_day"])


def limits_for(db: sqlite3.Connection, user_id: int) -> LimitValues:
    """What holds for the user: their own row if they have one, else the defaults."""
    row = db.execute(
        f"SELECT {COLUMNS} FROM user_limits WHERE user_id = ? OR user_id IS NULL "
        "ORDER BY user_id IS NULL LIMIT 1",
        (user_id,),
    ).fetchone()
    return NO_LIMITS if row is None else from_row(row)


def limits_for_conversation(
    db: sqlite3.Connection, conversation_id: int
) -> tuple[int, LimitValues]:
    """The conversation's owner and what holds for them, in one query (for the send's
    transaction, which is on the way to the engine request)."""
    row = db.execute(
        f"""
        SELECT conversations.user_id, {prefixed("user_limits")}
        FROM conversations LEFT JOIN user_limits
            ON user_limits.user_id = conversations.user_id OR user_limits.user_id IS NULL
        WHERE conversations.id = ?
        ORDER BY user_limits.user_id IS NULL LIMIT 1
        """,
        (conversation_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no conversation {conversation_id}")
    # No row of either kind: the LEFT JOIN gives NULLs, which is no limits.
    return int(row["user_id"]), from_row(row)


def prefixed(table: str) -> str:
    return ", ".join(f"{table}.{column.strip()}" for column in COLUMNS.split(","))


def defaults(db: sqlite3.Connection) -> LimitValues:
    row = db.execute(f"SELECT {COLUMNS} FROM user_limits WHERE user_id IS NULL").fetchone()
    return NO_LIMITS if row is None else from_row(row)


def overrides(db: sqlite3.Connection) -> dict[int, LimitValues]:
    """Every user's own limits, by user id."""
    rows = db.execute(f"SELECT user_id, {COLUMNS} FROM user_limits WHERE user_id IS NOT NULL")
    return {row["user_id"]: from_row(row) for row in rows}


def set_defaults(db: sqlite3.Connection, values: LimitValues) -> None:
    set_row(db, None, values)


def set_override(db: sqlite3.Connection, user_id: int, values: LimitValues) -> None:
    set_row(db, user_id, values)


def remove_override(db: sqlite3.Connection, user_id: int) -> bool:
    """The user goes back to the defaults. False if they had no limits of their own."""
    cursor = db.execute("DELETE FROM user_limits WHERE user_id = ?", (user_id,))
    return cursor.rowcount == 1


def set_row(db: sqlite3.Connection, user_id: int | None, values: LimitValues) -> None:
    # `user_id IS ?` matches the defaults row (NULL) and a user's row alike.
    with transaction(db):
        cursor = db.execute(
            "UPDATE user_limits SET max_concurrent = ?, requests_per_minute = ?, "
            "tokens_per_day = ?, updated_at = ? WHERE user_id IS ?",
            (*astuple(values), now_iso(), user_id),
        )
        if cursor.rowcount == 0:
            db.execute(
                f"INSERT INTO user_limits (user_id, {COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?)",
                (user_id, *astuple(values), now_iso()),
            )
