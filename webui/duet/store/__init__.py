"""SQLite storage: opening the database, its schema and every start-up repair, in one place.

db.py             the connection and transactions
migrations.py     the schema, one function per change, applied once
search_index.py   the search indexes' backlog, caught up off the way to the engine
conversations.py, messages.py, runs.py, users.py   the queries of each area

The store imports nothing from the rest of Duet; everything above it imports from here.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from duet.store import api_usage, load_runs, messages, runs, search_index
from duet.store.db import connect
from duet.store.migrations import migrate


class StorageError(Exception):
    """The database cannot be used; the message names the file and what is wrong with it."""


def open_database(path: str | Path) -> sqlite3.Connection:
    """Connect, bring the schema up to date, and close out what a previous run left open:
    answers, compare answers and usage rows still `streaming`, and load runs still `running`,
    belonged to a server that stopped; messages still waiting for their search index rows get
    them.
    Raises `StorageError` with the path and the cause when the file cannot be used."""
    try:
        check_location(path)
        db = connect(path)
        migrate(db)
        messages.mark_interrupted(db)
        runs.mark_interrupted(db)
        api_usage.mark_interrupted(db)
        load_runs.mark_interrupted(db)
        search_index.catch_up(db)
    except (StorageError, sqlite3.Error, OSError) as error:
        raise StorageError(
            f"Duet cannot use its database {display_path(path)}: {describe_storage_error(error)}"
        ) from error
    return db


def check_location(path: str | Path) -> None:
    """Refuse a path whose folder cannot hold the database, before SQLite gives a vaguer error."""
    if str(path) == ":memory:":
        return
    target = Path(path)
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StorageError(f"{parent} is a file, not a folder")
            break
    folder = target.parent
    if target.exists() and target.is_dir():
        raise StorageError(f"{target} is a folder, not a database file")
    folder.mkdir(parents=True, exist_ok=True)
    if not target.exists() and not os_access_writable(folder):
        raise StorageError(f"the folder {folder} is not writable, so the database cannot be made")
    if target.exists() and not os_access_writable(target):
        raise StorageError(f"{target} is read-only")


def os_access_writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def display_path(path: str | Path) -> str:
    return str(path) if str(path) == ":memory:" else str(Path(path).resolve())


def describe_storage_error(error: BaseException) -> str:
    """What went wrong with the database, in a person's words: full disk, read-only, I/O."""
    if isinstance(error, StorageError):
        return str(error)
    if isinstance(error, OSError) and error.errno is not None:
        if error.errno == errno.ENOSPC:
            return "the disk is full"
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return f"it cannot be written ({error.strerror})"
        return error.strerror or str(error)
    text = str(error).lower()
    if "full" in text:
        return "the disk is full (SQLite: database or disk is full)"
    if "readonly" in text or "read-only" in text:
        return "it is read-only (SQLite: attempt to write a readonly database)"
    if "disk i/o" in text:
        return "the disk failed to read or write it (SQLite: disk I/O error)"
    if "locked" in text or "busy" in text:
        return "another program holds it locked (SQLite: database is locked)"
    if "unable to open" in text:
        return "it cannot be opened (SQLite: unable to open database file)"
    if "not a database" in text or "malformed" in text:
        return f"it is not a valid SQLite database (SQLite: {error})"
    return f"SQLite: {error}"
