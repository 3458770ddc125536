"""Users. For now there is one, the local user every conversation belongs to; accounts, roles and
API keys will add rows and columns here."""

from __future__ import annotations

import sqlite3

LOCAL_USER_ID = 1


def user_name(db: sqlite3.Connection, user_id: int) -> str | None:
    row = db.execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else str(row["name"])
