"""API keys for Duet's `/v1`: a row per key, found by the SHA-256 of its token.

The token itself is never stored (its owner sees it once); `key_prefix` is its first characters,
for recognising it in a list. Every query names whose keys it reads or changes, except the two
that exist for that purpose: `find_key` (a request's token says whose it is) and the admin's
`list_all_keys`. Times are ISO 8601 in UTC, like every stamp in the store, so they compare as
text; the caller passes the moment it means by "now".
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    user_id: int
    owner: str  # the owner's user name
    name: str
    key_prefix: str
    # The /v1 model names this key may use; None: every model.
    allowed_models: tuple[str, ...] | None
    keep_history: bool
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None

    def state(self, now: str) -> str:
        """active, revoked or expired (at `now`)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


SELECT = "SELECT api_keys.*, users.name AS owner FROM api_keys JOIN users ON users.id = user_id"


def from_row(row: sqlite3.Row) -> ApiKey:
    allowed = row["allowed_models"]
    return ApiKey(
        id=row["id"],
        user_id=row["user_id"],
        owner=row["owner"],
        name=row["name"],
        key_prefix=row["key_prefix"],
        allowed_models=None if allowed is None else tuple(json.loads(allowed)),
        keep_history=bool(row["keep_history"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def create_key(
    db: sqlite3.Connection,
    user_id: int,
    name: str,
    key_hash: str,
    key_prefix: str,
    allowed_models: tuple[str, ...] | None,
    expires_at: str | None,
    created_at: str,
    keep_history: bool = False,
) -> ApiKey:
    row = db.execute(
        "INSERT INTO api_keys (user_id, name, key_hash, key_prefix, allowed_models,"
        " keep_history, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            user_id,
            name,
            key_hash,
            key_prefix,
            None if allowed_models is None else json.dumps(list(allowed_models)),
            int(keep_history),
            created_at,
            expires_at,
        ),
    ).fetchone()
    key = get_key(db, user_id, row["id"])
    assert key is not None
    return key


def get_key(db: sqlite3.Connection, user_id: int, key_id: int) -> ApiKey | None:
    row = db.execute(
        SELECT + " WHERE api_keys.id = ? AND api_keys.user_id = ?", (key_id, user_id)
    ).fetchone()
    return None if row is None else from_row(row)


def find_key(db: sqlite3.Connection, key_hash: str) -> ApiKey | None:
    """The key of this token hash, whatever its state (the caller decides what it allows)."""
    row = db.execute(SELECT + " WHERE api_keys.key_hash = ?", (key_hash,)).fetchone()
    return None if row is None else from_row(row)


def list_keys(db: sqlite3.Connection, user_id: int) -> list[ApiKey]:
    """One user's keys, newest first."""
    rows = db.execute(SELECT + " WHERE api_keys.user_id = ? ORDER BY api_keys.id DESC", (user_id,))
    return [from_row(row) for row in rows]


def list_all_keys(db: sqlite3.Connection) -> list[ApiKey]:
    """Every user's keys, for admins (metadata only: the tokens are nowhere), newest first."""
    return [from_row(row) for row in db.execute(SELECT + " ORDER BY api_keys.id DESC")]


def revoke_key(db: sqlite3.Connection, key_id: int, now: str, user_id: int | None) -> bool:
    """Revoke a key that is not revoked yet: `user_id`'s own, or anyone's when it is None (an
    admin). False if there is no such key."""
    cursor = db.execute(
        "UPDATE api_keys SET revoked_at = ?"
        " WHERE id = ? AND revoked_at IS NULL AND (? IS NULL OR user_id = ?)",
        (now, key_id, user_id, user_id),
    )
    return cursor.rowcount > 0


def touch_key(db: sqlite3.Connection, user_id: int, key_id: int, now: str) -> None:
    db.execute(
        "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND user_id = ?",
        (now, key_id, user_id),
    )
