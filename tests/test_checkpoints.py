"""The app's connection leaves checkpoints to a worker thread (duet.store.checkpoints)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from duet.store import checkpoints, open_database
from duet.store.checkpoints import Checkpointer, hand_over_checkpoints

ROW = "x" * 3000  # about one page per row


def fill(db: sqlite3.Connection, rows: int) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS filler (text TEXT)")
    for _ in range(rows):
        db.execute("INSERT INTO filler VALUES (?)", (ROW,))


def test_the_apps_commits_do_not_checkpoint(tmp_path: Path) -> None:
    db = open_database(tmp_path / "duet.db")
    hand_over_checkpoints(db)
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    # Past SQLite's default of 1000 pages, a commit would have copied the log back and the
    # log would restart from its beginning; handed over, it only grows.
    fill(db, 1500)
    assert (tmp_path / "duet.db-wal").stat().st_size > 1500 * 4096
    db.close()


def test_a_checkpoint_copies_the_whole_log_and_the_log_restarts(tmp_path: Path) -> None:
    path = tmp_path / "duet.db"
    db = open_database(path)
    hand_over_checkpoints(db)
    fill(db, 300)
    checkpointer = Checkpointer(path)
    frames, copied = checkpointer.checkpoint()
    assert frames >= 300 and copied == frames
    wal_size = checkpointer.log_bytes()
    # The next commits write from the start of the log again, so it does not grow.
    fill(db, 100)
    assert checkpointer.log_bytes() <= wal_size
    # Everything is in the database file: a connection reading it without the log sees it.
    db.close()
    checkpointer.close()
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    rows = sqlite3.connect(copy).execute("SELECT count(*) FROM filler").fetchone()[0]
    assert rows == 400


def log_salt(path: Path) -> bytes:
    """The salts of the log's header (sqlite.org/fileformat2.html): new each time it restarts."""
    return path.with_name(path.name + "-wal").read_bytes()[16:24]


def test_the_log_restarts_in_the_checkpointer_not_in_the_apps_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "duet.db"
    db = open_database(path)
    hand_over_checkpoints(db)
    fill(db, 300)
    checkpointer = Checkpointer(path)
    before = log_salt(path)
    frames, copied = checkpointer.checkpoint()
    assert copied == frames
    # The checkpointer began the new log itself (and so synced its header in its own thread)...
    restarted = log_salt(path)
    assert restarted != before
    # ...so the app's next commit goes on in that log instead of starting one.
    fill(db, 1)
    assert log_salt(path) == restarted
    assert db.execute("SELECT count(*) FROM filler").fetchone()[0] == 301
    db.close()
    checkpointer.close()


def test_what_is_due_is_the_log_not_yet_copied_not_the_files_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "CHECK_SECONDS", 0.01)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_BYTES", 64 * 1024)
    path = tmp_path / "duet.db"
    db = open_database(path)
    hand_over_checkpoints(db)
    fill(db, 100)
    checkpointer = Checkpointer(path)
    assert checkpointer.uncopied_bytes() > 100 * 4096
    checkpointer.checkpoint()
    # The file keeps its size, but nothing in it is left to copy.
    assert checkpointer.log_bytes() > checkpoints.CHECKPOINT_BYTES
    assert checkpointer.uncopied_bytes() < checkpoints.CHECKPOINT_BYTES
    checkpointed = []
    monkeypatch.setattr(checkpointer, "checkpoint", lambda: checkpointed.append(1) or (0, 0))

    async def look_a_while(rows: int) -> None:
        fill(db, rows)
        task = asyncio.create_task(checkpointer.run())
        await asyncio.sleep(0.1)
        await checkpointer.stop(task)

    asyncio.run(look_a_while(rows=2))
    assert checkpointed == []
    asyncio.run(look_a_while(rows=100))
    assert checkpointed
    db.close()


def test_the_checkpointer_runs_while_the_app_writes_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "CHECK_SECONDS", 0.01)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_BYTES", 64 * 1024)
    monkeypatch.setattr(checkpoints, "RESTART_BYTES", 256 * 1024)
    path = tmp_path / "duet.db"
    db = open_database(path)
    hand_over_checkpoints(db)
    checkpointer = Checkpointer(path)

    async def write_while_checkpointing() -> int:
        task = asyncio.create_task(checkpointer.run())
        for _ in range(40):
            fill(db, 20)
            await asyncio.sleep(0.02)
        await checkpointer.stop(task)
        return checkpointer.log_bytes()

    log_bytes = asyncio.run(write_while_checkpointing())
    # 800 pages were written, with no pause for a checkpoint to finish in; the log restarted
    # along the way and was truncated back, so it never held them all.
    assert log_bytes < 400 * 4096
    db.close()


def test_a_failing_checkpoint_is_logged_once_while_it_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointer = Checkpointer(tmp_path / "no-such-folder" / "duet.db")

    async def three_times() -> None:
        for _ in range(3):
            await checkpointer.checkpoint_in_thread()

    asyncio.run(three_times())
    failures = [r for r in caplog.records if r.message.startswith("checkpointing")]
    assert len(failures) == 1
    assert "no-such-folder" in failures[0].message
