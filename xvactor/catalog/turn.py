"""Whose turn it is to write the catalog, among the processes that share it.

SQLite lets one connection write at a time and makes the others retry: its busy handler
sleeps 1, 2, 5, 10... ms between attempts, whether the lock came free a moment after or
not.  Receive worker processes commit every millisecond or so each, so they would meet
that lock often and each time lose at least a millisecond asleep.  A writer therefore
takes its turn first on an ``flock`` of a file beside the catalog: the kernel wakes the
next waiter the moment the holder lets go, and SQLite's own lock is then free.  The turn
is an optimisation only; SQLite's locking is still what keeps the catalog consistent.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = ["WriteTurn"]


class WriteTurn:
    """An exclusive turn to write the catalog at ``database`` (one per writing thread).

    Each instance opens the turn file itself: ``flock`` excludes other open files, so two
    threads of one process each need their own instance.
    """

    def __init__(self, database: Path) -> None:
        self._fd = os.open(f"{database}-turn", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def __enter__(self) -> WriteTurn:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the turn file (not while holding the turn)."""
        os.close(self._fd)
