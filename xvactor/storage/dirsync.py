"""Directory fsyncs shared by the threads that add entries to one directory.

A name linked into a directory is durable once an fsync of that directory has *begun*
after the link and ended without error.  Instances of one series received on several
associations at once land in the same directory, so one directory fsync often covers
entries other threads linked while it waited to begin: those threads need none of their
own.  This is group commit (as in a database log) applied to a directory; on a disk that
serves one cache flush at a time (every fsync is one on ext4 without a journal) it takes
flushes out of the queue that every association's instance waits in.

Usage: call :meth:`DirectorySync.entered` right after linking (or creating) an entry, and
:meth:`DirectorySync.sync` with what it returned before relying on that entry.
"""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from xvactor.dicom.part10 import fsync_directory

__all__ = ["DirectorySync"]

_REMEMBERED = 1024
"""Idle directories whose last fsync is remembered (the oldest are forgotten first)."""

_FAILURES = 16
"""Failed fsyncs remembered per directory, for the threads that relied on them."""


@dataclass
class _Directory:
    durable: int = 0
    """Every entry numbered up to this is durable (a successful fsync began after it)."""
    running: int | None = None
    """The fsync under way covers entries numbered up to this."""
    waiting: int = 0
    """Threads inside :meth:`DirectorySync.sync` for this directory."""
    failures: list[tuple[int, int, OSError]] = field(default_factory=list)
    """Entries ``(after, through]`` an fsync failed to make durable, and its error."""


class DirectorySync:
    """Shares directory fsyncs among threads; thread-safe."""

    def __init__(self, fsync: Callable[[str], None] = fsync_directory) -> None:
        self._fsync = fsync
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._entries = 0
        """Entries numbered so far, across all directories."""
        self._directories: OrderedDict[str, _Directory] = OrderedDict()

    def entered(self) -> int:
        """Number an entry just linked or created (call after the link has returned)."""
        with self._lock:
            self._entries += 1
            return self._entries

    def sync(self, directory: str, entry: int) -> None:
        """Return once ``entry`` (from :meth:`entered`) is durable in ``directory``.

        Either an fsync another thread began after the entry was numbered covers it, or
        this thread runs one, which covers every entry numbered before it began.

        Raises
        ------
        OSError
            The fsync that was to make ``entry`` durable failed (every thread that relied
            on it gets the error).
        """
        with self._changed:
            state = self._directories.get(directory)
            if state is None:
                state = self._directories[directory] = _Directory()
                self._forget_idle()
            self._directories.move_to_end(directory)
            state.waiting += 1
            try:
                self._sync_locked(directory, state, entry)
            finally:
                state.waiting -= 1

    def _sync_locked(self, directory: str, state: _Directory, entry: int) -> None:
        while True:
            for after, through, error in state.failures:
                if after < entry <= through:
                    raise OSError(error.errno or errno.EIO, error.strerror, directory)
            if state.durable >= entry:
                return
            if state.running is not None:
                self._changed.wait()  # covered by the running fsync, or the next one
                continue
            covers = state.running = self._entries
            failure: OSError | None = None
            self._lock.release()
            try:
                self._fsync(directory)
            except OSError as exc:
                failure = exc
            finally:
                self._lock.acquire()
                state.running = None
                if failure is None:
                    state.durable = max(state.durable, covers)
                else:
                    state.failures.append((state.durable, covers, failure))
                    del state.failures[:-_FAILURES]
                self._changed.notify_all()

    def _forget_idle(self) -> None:
        """Bound the directories remembered: drop the least recently synced idle ones."""
        excess = len(self._directories) - _REMEMBERED
        if excess <= 0:
            return
        for name in [n for n, s in self._directories.items() if not s.waiting][:excess]:
            del self._directories[name]
