"""A catalog commit made durable after the write lock is given back.

With ``synchronous=FULL``, SQLite fsyncs the WAL inside COMMIT, while it holds the
database's write lock: every receive process's commit then waits for the other's device
flush, and flushes run one at a time however many processes commit.  The catalog writers
commit with ``synchronous=NORMAL`` instead (the frames are written to the WAL, not yet
flushed, and the lock is released), then fsync the WAL file themselves, and only then
answer anyone (PS3.4 B.2.3: Success only for what is stored).  The two processes'
flushes overlap, and the lock is held for the SQL alone.

Why a commit is durable once that fsync returns: its frames were written to the WAL file
before COMMIT returned, and an fsync of the file makes every write before it durable.  If a
checkpoint copied the frames into the database file and the WAL restarted over them
meanwhile, SQLite synced the WAL before that checkpoint and the database file after it
(in WAL mode with ``synchronous=NORMAL``), so the frames were durable anyway.  Recovery
reads the WAL in order and stops at the first frame that is not whole: a later commit
acknowledged by another process was fsynced after this one's frames were written, so it
never survives without them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WalSync"]


class WalSync:
    """fsyncs the WAL file of the catalog at ``database`` (one per writer connection).

    The file is opened on first use and again whenever SQLite has replaced it (it deletes
    the WAL when its last connection closes; the writer's own connection keeps it open,
    so this is a safeguard).
    """

    def __init__(self, database: Path) -> None:
        self._path = f"{database}-wal"
        self._fd: int | None = None
        self._inode = 0

    def sync(self) -> None:
        """Make every commit written so far durable (blocking).

        Raises
        ------
        OSError
            The WAL could not be flushed: what was committed since the last sync may not
            survive a power loss.
        """
        inode = os.stat(self._path).st_ino
        if self._fd is None or inode != self._inode:
            self.close()
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            self._inode = os.fstat(self._fd).st_ino
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the WAL file (if open)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
