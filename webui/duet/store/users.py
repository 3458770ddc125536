"""Users: the local user of a private instance, and the accounts of team mode.

Passwords arrive here already hashed (`duet.auth.passwords`); nothing in the store sees one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from duet.store.db import now_iso

LOCAL_USER_ID = 1

Role = Literal["admin", "user", "pending"]
ROLES: tuple[Role, ...] = ("admin", "user", "pending")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    disabled: bool
    must_change_password: bool
    password_hash: str | None
    created_at: str

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None


def from_row(row: sqlite3.Row) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        disabled=bool(row["disabled"]),
        must_change_password=bool(row["must_change_password"]),
        password_hash=row["password_hash"],
        created_at=row["created_at"],
    )


def user_name(db: sqlite3.Connection, user_id: int) -> str | None:
    row = db.execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else str(row["name"])


def get_user(db: sqlite3.Connection, user_id: int) -> User | None:
    row = db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else from_row(row)


def find_user(db: sqlite3.Connection, name: str) -> User | None:
    """The account with this name, compared without regard to case."""
    row = db.execute("SELECT * FROM users WHERE lower(name) = lower(?)", (name,)).fetchone()
    return None if row is None else from_row(row)


def list_users(db: sqlite3.Connection) -> list[User]:
    rows = db.execute("SELECT * FROM users WHERE password_hash IS NOT NULL ORDER BY lower(name)")
    return [from_row(row) for row in rows]


def accounts_exist(db: sqlite3.Connection) -> bool:
    """Whether anyone can sign in yet (the local user of a private instance cannot)."""
    row = db.execute("SELECT 1 FROM users WHERE password_hash IS NOT NULL LIMIT 1").fetchone()
    return row is not None


def count_admins(db: sqlite3.Connection) -> int:
    row = db.execute(
        "SELECT count(*) FROM users"
        " WHERE role = 'admin' AND disabled = 0 AND password_hash IS NOT NULL"
    ).fetchone()
    return int(row[0])


def create_user(db: sqlite3.Connection, name: str, password_hash: str, role: Role) -> User:
    row = db.execute(
        "INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING *",
        (name, password_hash, role, now_iso()),
    ).fetchone()
    return from_row(row)


def claim_local_user(db: sqlite3.Connection, name: str, password_hash: str) -> User | None:
    """Make the local user of a single-user database the first admin, with this name and
    password, so that its conversations and runs are theirs. None if it was claimed before."""
    row = db.execute(
        "UPDATE users SET name = ?, password_hash = ?, role = 'admin', disabled = 0"
        " WHERE id = ? AND password_hash IS NULL RETURNING *",
        (name, password_hash, LOCAL_USER_ID),
    ).fetchone()
    return None if row is None else from_row(row)


def set_password(
    db: sqlite3.Connection, user_id: int, password_hash: str, must_change: bool
) -> None:
    db.execute(
        "UPDATE users SET password_hash = ?, must_change_password = ? WHERE id = ?",
        (password_hash, int(must_change), user_id),
    )


def set_role(db: sqlite3.Connection, user_id: int, role: Role) -> None:
    db.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))


def set_disabled(db: sqlite3.Connection, user_id: int, disabled: bool) -> None:
    db.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))


def delete_pending_user(db: sqlite3.Connection, user_id: int) -> bool:
    """Remove an account that was never approved (an admin rejected it); its sessions go with
    it. A pending account can own nothing else: it could never use the app."""
    cursor = db.execute("DELETE FROM users WHERE id = ? AND role = 'pending'", (user_id,))
    return cursor.rowcount > 0


def instance_value(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM instance WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_instance_value(db: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        db.execute("DELETE FROM instance WHERE key = ?", (key,))
    else:
        db.execute(
            "INSERT INTO instance (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
