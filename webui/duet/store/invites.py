"""Invite links: an admin's one-time link that makes one account with a chosen role.

Only the SHA-256 of a link's token is kept, as for sessions: the database alone opens no invite.
An invite is open until it is used or `expires_at` passes; times are ISO 8601 in UTC like every
stamp in the store, so they compare as text, and the caller passes the moment it means by "now".
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

InviteRole = Literal["admin", "user"]
INVITE_ROLES: tuple[InviteRole, ...] = ("user", "admin")


@dataclass(frozen=True, slots=True)
class Invite:
    id: int
    role: InviteRole
    created_by: int
    creator: str
    created_at: str
    expires_at: str
    used_at: str | None
    used_by: int | None
    used_by_name: str | None

    def state(self, now: str) -> Literal["open", "used", "expired"]:
        if self.used_at is not None:
            return "used"
        return "expired" if self.expires_at <= now else "open"


# The creator's and the new account's names come along, for the admin page's list.
SELECT = """
    SELECT invites.*, creator.name AS creator, used.name AS used_by_name
    FROM invites
    JOIN users AS creator ON creator.id = invites.created_by
    LEFT JOIN users AS used ON used.id = invites.used_by
"""


def from_row(row: sqlite3.Row) -> Invite:
    return Invite(
        id=row["id"],
        role=row["role"],
        created_by=row["created_by"],
        creator=row["creator"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        used_by=row["used_by"],
        used_by_name=row["used_by_name"],
    )


def get_invite(db: sqlite3.Connection, invite_id: int) -> Invite | None:
    row = db.execute(SELECT + " WHERE invites.id = ?", (invite_id,)).fetchone()
    return None if row is None else from_row(row)


def create_invite(
    db: sqlite3.Connection,
    token_hash: str,
    created_by: int,
    role: InviteRole,
    created_at: str,
    expires_at: str,
) -> Invite:
    row = db.execute(
        "INSERT INTO invites (token_hash, created_by, role, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (token_hash, created_by, role, created_at, expires_at),
    ).fetchone()
    invite = get_invite(db, row["id"])
    assert invite is not None
    return invite


def find_open_invite(db: sqlite3.Connection, token_hash: str, now: str) -> Invite | None:
    """The invite of this token hash, if it is neither used nor expired at `now`."""
    row = db.execute(
        SELECT + " WHERE invites.token_hash = ? AND invites.used_at IS NULL"
        " AND invites.expires_at > ?",
        (token_hash, now),
    ).fetchone()
    return None if row is None else from_row(row)


def mark_used(db: sqlite3.Connection, invite_id: int, user_id: int, now: str) -> bool:
    """Spend an open invite on the account `user_id`; False if it was used or expired meanwhile
    (the condition is in the UPDATE itself, so one invite makes one account)."""
    cursor = db.execute(
        "UPDATE invites SET used_at = ?, used_by = ?"
        " WHERE id = ? AND used_at IS NULL AND expires_at > ?",
        (now, user_id, invite_id, now),
    )
    return cursor.rowcount > 0


def list_invites(db: sqlite3.Connection) -> list[Invite]:
    """Every invite, newest first."""
    return [from_row(row) for row in db.execute(SELECT + " ORDER BY invites.id DESC")]


def delete_unused_invite(db: sqlite3.Connection, invite_id: int) -> bool:
    """Revoke an invite nobody has used (a used one stays, as the record of who came in by it)."""
    cursor = db.execute("DELETE FROM invites WHERE id = ? AND used_at IS NULL", (invite_id,))
    return cursor.rowcount > 0
