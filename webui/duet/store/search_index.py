"""The search indexes' backlog: messages stored already ended whose index rows are still due.

A user's message is written in the send's transaction, on the way to its engine request, and
tokenizing it into both indexes (words and trigrams) there was about a third of that
transaction's time. So such a message is only noted in `search_backlog` (migration m015 has
the triggers and the rule they keep), and `catch_up` writes the index rows: once the answer's
engine request is on the wire (`duet.turns.start_answer`), before every search (so a search
never misses a message), and at start-up (`duet.store.open_database`).
"""

from __future__ import annotations

import sqlite3

from duet.store.db import transaction


def catch_up(db: sqlite3.Connection) -> int:
    """Index every message in the backlog that has ended; the number of messages indexed.
    Inside a caller's transaction it joins it."""
    if db.execute("SELECT 1 FROM search_backlog LIMIT 1").fetchone() is None:
        return 0
    with transaction(db):
        for table in ("messages_fts", "messages_trigram"):
            db.execute(
                f"""
                INSERT INTO {table} (rowid, content, reasoning)
                SELECT messages.id, messages.content, messages.reasoning
                FROM search_backlog JOIN messages ON messages.id = search_backlog.message_id
                WHERE messages.status != 'streaming'
                """
            )
        # A message that went back to streaming is left out: the update trigger indexes it when
        # it ends, now that it is no longer waiting here.
        return db.execute("DELETE FROM search_backlog").rowcount
