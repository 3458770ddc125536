"""Queries about shares: read-only links to one conversation or compare run.

The link's token is the only thing a teammate holds, so `find_live_share` looks a share up by
its token alone; every other query names the owner, so no one lists or revokes another user's
shares. A share never stands for the object itself: the view still loads the object through
its owner's scoped query (a deleted object stays deleted), and ids are never reused.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from typing import Literal

from duet.store.db import now_iso

ShareKind = Literal["conversation", "run"]

# 24 random bytes: 32 URL-safe characters, far beyond guessing.
TOKEN_BYTES = 24


@dataclass(frozen=True, slots=True)
class Share:
    id: int
    token: str
    user_id: int
    kind: ShareKind
    object_id: int
    created_at: str
    revoked_at: str | None


def from_row(row: sqlite3.Row) -> Share:
    return Share(
        id=row["id"],
        token=row["token"],
        user_id=row["user_id"],
        kind=row["kind"],
        object_id=row["object_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def create_share(db: sqlite3.Connection, user_id: int, kind: ShareKind, object_id: int) -> Share:
    """A new link to the owner's object. The caller has checked that `user_id` owns it."""
    row = db.execute(
        "INSERT INTO shares (token, user_id, kind, object_id, created_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING *",
        (secrets.token_urlsafe(TOKEN_BYTES), user_id, kind, object_id, now_iso()),
    ).fetchone()
    return from_row(row)


def find_live_share(db: sqlite3.Connection, token: str) -> Share | None:
    """The share a link stands for, unless it was revoked."""
    row = db.execute(
        "SELECT * FROM shares WHERE token = ? AND revoked_at IS NULL", (token,)
    ).fetchone()
    return None if row is None else from_row(row)


def live_shares_of(
    db: sqlite3.Connection, user_id: int, kind: ShareKind, object_id: int
) -> list[Share]:
    """The owner's links to one object that still work, oldest first."""
    rows = db.execute(
        "SELECT * FROM shares WHERE user_id = ? AND kind = ? AND object_id = ?"
        " AND revoked_at IS NULL ORDER BY id",
        (user_id, kind, object_id),
    )
    return [from_row(row) for row in rows]


def revoke_share(db: sqlite3.Connection, user_id: int, share_id: int) -> Share | None:
    """Stop a link from working; revoking it again changes nothing. None when the owner has no
    such share (another user's share is not theirs to revoke)."""
    row = db.execute(
        "UPDATE shares SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? AND user_id = ?"
        " RETURNING *",
        (now_iso(), share_id, user_id),
    ).fetchone()
    return None if row is None else from_row(row)


def revoke_shares_of(db: sqlite3.Connection, user_id: int, kind: ShareKind, object_id: int) -> int:
    """Stop every link the owner made to one object (it is being deleted); returns how many."""
    cursor = db.execute(
        "UPDATE shares SET revoked_at = ? WHERE user_id = ? AND kind = ? AND object_id = ?"
        " AND revoked_at IS NULL",
        (now_iso(), user_id, kind, object_id),
    )
    return cursor.rowcount
