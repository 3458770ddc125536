"""Write-ahead log checkpoints, off the event loop.

In WAL mode SQLite appends every commit to the `-wal` file and, from time to time, copies it back
into the database file: a checkpoint, which writes and syncs both files. By default the commit
that finds the log past 1000 pages runs it, inside that commit (sqlite.org/wal.html, "Automatic
Checkpoint"). The app has one connection, used from the event loop, so that commit, and every
stream the loop serves, waits for the disk: tens of milliseconds on a busy disk, landing on a
save of some answer or on the transaction of a message being sent.

So the app's connection does not checkpoint (`wal_autocheckpoint = 0`), and `Checkpointer` does
it from a connection of its own in a worker thread (SQLite releases the GIL while it works, so the
loop runs on meanwhile), the way Litestream does:

- PASSIVE once the log passes CHECKPOINT_BYTES: it copies what it can without waiting for the
  app's writes (sqlite.org/pragma.html#pragma_wal_checkpoint). The log restarts from its
  beginning only when a write finds it wholly copied, which steady writes during the copy can
  put off for ever;
- so past RESTART_BYTES a RESTART follows the PASSIVE one: it holds off the app's writes while it
  copies the little the PASSIVE one left, syncs, and sees the log restart. The app's writes wait
  for it (their busy timeout), once per RESTART_BYTES of log, where SQLite's own checkpoint made
  them wait once every 1000 pages. `journal_size_limit` then truncates the file.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

# How often the log's size is looked at, and the size from which it is checkpointed: well under
# SQLite's own 1000 pages, so each checkpoint has little to copy.
CHECK_SECONDS = 1.0
CHECKPOINT_BYTES = 1 << 20
# The size from which a checkpoint also restarts the log (see the module docstring).
RESTART_BYTES = 16 << 20
# How long a RESTART checkpoint waits for the app's transaction in progress to end.
BUSY_TIMEOUT_MS = 5000
# What the log file is truncated back to after a checkpoint that reset it.
JOURNAL_SIZE_LIMIT_BYTES = 4 << 20


def hand_over_checkpoints(db: sqlite3.Connection) -> None:
    """Stop `db` from checkpointing in its own commits (a `Checkpointer` does it instead)."""
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")


class Checkpointer:
    """Checkpoints the database at `path` whenever its log has grown past CHECKPOINT_BYTES."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.wal = self.path.with_name(self.path.name + "-wal")
        self._db: sqlite3.Connection | None = None
        self._running: asyncio.Future[tuple[int, int]] | None = None
        self._failing = False

    def log_bytes(self) -> int:
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def checkpoint(self) -> tuple[int, int]:
        """A PASSIVE checkpoint, and a RESTART one after it if the log is past RESTART_BYTES
        (blocking: run it in a worker thread). Returns SQLite's (frames in the log, frames
        copied to the database) after the last of them."""
        if self._db is None:
            # Opened here, in the worker thread, and used by one thread at a time.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if self.log_bytes() >= RESTART_BYTES:
            _busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        return frames, copied

    async def run(self) -> None:
        """Until cancelled (`stop`): look at the log every CHECK_SECONDS, checkpoint it when it
        has grown."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self.log_bytes() >= CHECKPOINT_BYTES:
                await self.checkpoint_in_thread()

    async def checkpoint_in_thread(self) -> None:
        """One checkpoint in a worker thread; a failure is logged (once while it lasts)."""
        self._running = asyncio.ensure_future(asyncio.to_thread(self.checkpoint))
        # Shielded: cancelling the caller must not leave the thread using a closed connection
        # (`stop` waits for it).
        await asyncio.shield(self._report(self._running))

    async def _report(self, running: asyncio.Future[tuple[int, int]]) -> None:
        try:
            await running
        except sqlite3.Error as error:
            # The app's own writes report what is wrong with the disk; say it here once.
            if not self._failing:
                log.warning("checkpointing %s failed (%s); trying again", self.path, error)
            self._failing = True
        else:
            self._failing = False

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Cancel `task` (running `run`), wait for a checkpoint in progress, close."""
        task.cancel()
        await asyncio.wait({task})
        if self._running is not None:
            await asyncio.wait({self._running})
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
