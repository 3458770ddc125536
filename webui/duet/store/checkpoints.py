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

What is due is read from how much of the log is not yet copied back, not from the `-wal` file's
size: the file keeps its size when the log restarts (up to `journal_size_limit`), so once it had
grown past CHECKPOINT_BYTES a size check would call for a checkpoint every CHECK_SECONDS, for
ever, each one restarting the log.

And the log restarts here, not on the event loop: once a checkpoint has copied all of it, the
next write starts the log again from its beginning, and the connection that makes that write
first syncs the log's new header to disk, with `synchronous = NORMAL` too ("the WAL file header
is synchronized when a WAL file begins to be reused after a checkpoint",
sqlite.org/pragma.html#pragma_synchronous; `sqlite3WalFrames` in SQLite's wal.c). Left to the
app, that sync lands on whatever it writes next, an answer being saved or the transaction of a
message being sent, and holds every stream while the disk answers; so the checkpointer makes
that first write itself. A write of the app's that comes while it does so waits for it (the busy
timeout, whose sleeps on the event loop overshoot the wait a little): a chance once per
CHECKPOINT_BYTES of log, where leaving the first write to the app made the wait certain.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# How often the log is looked at, and how much of it not yet copied back calls for a checkpoint:
# well under SQLite's own 1000 pages, so each checkpoint has little to copy.
CHECK_SECONDS = 1.0
CHECKPOINT_BYTES = 1 << 20
# The size from which a checkpoint also restarts the log (see the module docstring).
RESTART_BYTES = 16 << 20
# How long a RESTART checkpoint waits for the app's transaction in progress to end.
BUSY_TIMEOUT_MS = 5000
# What the log file is truncated back to after a checkpoint that reset it.
JOURNAL_SIZE_LIMIT_BYTES = 4 << 20

# The wal-index header at the start of the `-shm` file (sqlite.org/walformat.html, "The
# WAL-Index Header"), in the machine's byte order: the page size (2 bytes at 14; 1 stands for
# 65536), mxFrame, the log's last valid frame (4 bytes at 16), and nBackfill, the frames already
# copied back into the database (4 bytes at 96).
WAL_INDEX_HEADER_BYTES = 136
# Each frame of the log is a page and a header of this many bytes (sqlite.org/fileformat2.html).
WAL_FRAME_HEADER_BYTES = 24


def hand_over_checkpoints(db: sqlite3.Connection) -> None:
    """Stop `db` from checkpointing in its own commits (a `Checkpointer` does it instead)."""
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")


class Checkpointer:
    """Checkpoints the database at `path` whenever its log has grown past CHECKPOINT_BYTES."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.wal = self.path.with_name(self.path.name + "-wal")
        self.wal_index = self.path.with_name(self.path.name + "-shm")
        self._db: sqlite3.Connection | None = None
        self._running: asyncio.Future[tuple[int, int]] | None = None
        self._failing = False

    def log_bytes(self) -> int:
        """The size of the `-wal` file (which a restart of the log does not shrink)."""
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def uncopied_bytes(self) -> int:
        """How much of the log is not copied back into the database yet: its frames past
        nBackfill, read from the wal-index header. 0 when there is no log."""
        try:
            with self.wal_index.open("rb") as index:
                header = index.read(WAL_INDEX_HEADER_BYTES)
        except FileNotFoundError:
            return 0
        if len(header) < WAL_INDEX_HEADER_BYTES:
            return 0
        page_size = int.from_bytes(header[14:16], sys.byteorder)
        last_frame = int.from_bytes(header[16:20], sys.byteorder)
        copied = int.from_bytes(header[96:100], sys.byteorder)
        frame_bytes = (65536 if page_size == 1 else page_size) + WAL_FRAME_HEADER_BYTES
        return max(last_frame - copied, 0) * frame_bytes

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
        if frames > 0 and copied == frames:
            self.restart_log(self._db)
        return frames, copied

    @staticmethod
    def restart_log(db: sqlite3.Connection) -> None:
        """Make the first write after a checkpoint that copied the whole log, so that this
        connection, not the app's, syncs the restarted log's header (the module docstring).
        The write changes nothing: `user_version`, which Duet does not use, set to its value."""
        db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            db.execute(f"PRAGMA user_version = {int(version)}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def run(self) -> None:
        """Until cancelled (`stop`): look at the log every CHECK_SECONDS, checkpoint it when it
        has grown."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self.uncopied_bytes() >= CHECKPOINT_BYTES:
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
