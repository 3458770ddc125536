"""The SQLite connection: WAL, foreign keys, explicit transactions (opened by `duet.store`).

The web app uses a single connection from the event loop thread. Every statement is short (a row
insert or update), and WAL lets readers such as `sqlite3` on the command line look in while a
stream is being saved.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the database, without touching the schema."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: transactions are explicit (see `transaction`), so a migration's DDL and
    # a multi-row change are atomic. check_same_thread is off because the ASGI server may hand
    # the connection between threads, but only one task uses it at a time.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode = WAL")
    # NORMAL is safe with WAL (a power cut can lose the last commits, never corrupt the file)
    # and keeps the frequent small updates of a streaming answer cheap.
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 5000")
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN … COMMIT, or ROLLBACK if the block raises. Inside another transaction it joins
    that one (its writes commit or roll back with the outer block)."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def now_iso() -> str:
    # Microseconds: the sidebar orders by this, and two writes rarely share one.
    return datetime.now(UTC).isoformat(timespec="microseconds")
