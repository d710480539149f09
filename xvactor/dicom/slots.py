"""Association slots shared by every receiving process: an exact ``max_associations``.

pynetdicom counts associations per process; with several receive workers that count is
not the node's.  Each slot is a lock file under ``<data>/.slots``; an association takes a
free one with a non-blocking ``flock`` when it is requested and gives it back when its
thread ends.  The kernel releases the locks of a process that dies, so a crashed worker
never leaks slots.  Within a process a set of free slots keeps two threads from sharing
one (``flock`` on the same open file description does not exclude its own process).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

__all__ = ["AssociationSlots"]


class AssociationSlots:
    """``count`` slots in ``directory``, shared with every process that opens the same."""

    def __init__(self, directory: Path, count: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._fds = [
            os.open(directory / f"slot-{index:04d}", os.O_RDWR | os.O_CREAT, 0o600)
            for index in range(count)
        ]
        self._free = set(range(count))
        self._lock = threading.Lock()

    def acquire(self) -> int | None:
        """Take a free slot, or ``None`` when every slot of the node is in use."""
        with self._lock:
            for index in sorted(self._free):
                try:
                    fcntl.flock(self._fds[index], fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # held by another process
                self._free.discard(index)
                return index
        return None

    def release(self, index: int) -> None:
        """Give a slot back."""
        with self._lock:
            fcntl.flock(self._fds[index], fcntl.LOCK_UN)
            self._free.add(index)

    def close(self) -> None:
        """Release every slot this process holds and close the files."""
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
            self._free.clear()
