"""The file a received dataset is spooled into: its bulk written around the page cache.

Writing a received object through the page cache copies every byte into newly allocated
cache pages, and the fsync that follows writes them out again.  On the VMs measured here
that copy is the largest cost of a large C-STORE (a 0.5 MB CT: about 1 ms of kernel time
buffered, 0.3 ms written with ``O_DIRECT``; a 2-core machine received twice the files per
second).  So a :class:`SpoolFile` gathers what arrives in a reused, page-aligned staging
buffer and writes each full buffer with ``O_DIRECT`` (Linux ``open(2)``: the buffer, the
length and the file offset are multiples of the block size); the unaligned tail, and a
whole object smaller than the buffer, are written through the page cache as before.  A
file system without ``O_DIRECT`` (tmpfs) gets buffered writes.  The durability rules do
not change: the file is fsynced, then linked, before any success (``xvactor.storage``).

It keeps the first bytes written (:attr:`head`), so that the header can be read without
reading the file back from the disk.  A whole object no larger than ``keep_up_to`` never
becomes a file at all: it stays in :attr:`head`, for the catalog to hold
(``xvactor.storage.pending``).  Creating and deleting a spool file per small instance is
not free: on ext4 without a journal, each new inode is searched for past every inode
deleted in the last seconds, and at a thousand instances a second that search became a
fifth of the receive processes' CPU.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from pathlib import Path

__all__ = ["HEAD_BYTES", "SpoolFile"]

STAGE_BYTES = 256 * 1024
"""Staging buffer size: objects smaller than this never use ``O_DIRECT``."""
HEAD_BYTES = 64 * 1024
"""How much of the file's beginning :attr:`SpoolFile.head` keeps."""
_ALIGN = 4096
_KEPT_BUFFERS = 16
"""Staging buffers kept for reuse (fresh memory is expensive to touch on a VM)."""

_O_DIRECT = getattr(os, "O_DIRECT", 0)
_free: list[mmap.mmap] = []
_free_lock = threading.Lock()


def _take_buffer() -> mmap.mmap:
    with _free_lock:
        if _free:
            return _free.pop()
    return mmap.mmap(-1, STAGE_BYTES)


def _give_back(buffer: mmap.mmap) -> None:
    with _free_lock:
        if len(_free) < _KEPT_BUFFERS:
            _free.append(buffer)
            return
    buffer.close()


class SpoolFile:
    """A write-only file, created exclusively at ``path`` (see the module docstring).

    ``direct_io=False``: every write goes through the page cache.  ``keep_up_to``: a whole
    object of at most this many bytes (and at most ``HEAD_BYTES``) is never written out;
    after :meth:`close` it is :attr:`head` and :attr:`on_disk` is false.  The file is
    created when the first bytes are written out.

    Raises
    ------
    OSError
        From :meth:`write`, :meth:`flush` and :meth:`close` (cannot create, disk full, I/O
        error).
    """

    def __init__(self, path: Path, *, direct_io: bool = True, keep_up_to: int = 0) -> None:
        self.name = os.fspath(path)
        self._fd: int | None = None
        self._keep = min(keep_up_to, HEAD_BYTES)
        self._buffer: mmap.mmap | None = _take_buffer()
        self._view: memoryview | None = memoryview(self._buffer)
        self._fill = 0
        self._written = 0
        """Bytes already in the file."""
        self._direct = direct_io and _O_DIRECT != 0
        """``O_DIRECT`` may still be used (the file offset is aligned, the fs takes it)."""
        self._direct_on = False
        self._head: bytes | None = None

    @property
    def head(self) -> bytes:
        """The first bytes written (up to ``HEAD_BYTES``)."""
        if self._head is not None:
            return self._head
        view = self._view
        return b"" if view is None else bytes(view[: min(self._fill, HEAD_BYTES)])

    @property
    def on_disk(self) -> bool:
        """Whether the file exists (bytes were written out, or are to be on closing)."""
        return self._fd is not None or self._keep == 0 or self._fill > self._keep

    @property
    def size(self) -> int:
        """Bytes written so far (in the file or staged)."""
        return self._written + self._fill

    def write(self, data: bytes | memoryview) -> int:
        """Stage ``data``, writing out each full buffer; returns ``len(data)``."""
        view = self._view
        if view is None:
            raise ValueError("write to a closed spool file")
        source = memoryview(data)
        total = len(source)
        while source:
            room = STAGE_BYTES - self._fill
            part = source[:room]
            view[self._fill : self._fill + len(part)] = part
            self._fill += len(part)
            source = source[len(part) :]
            if self._fill == STAGE_BYTES:
                self._write_out(STAGE_BYTES)
        return total

    def flush(self) -> None:
        """Write out everything staged (the file is then complete so far), unless the
        object may yet be kept whole in memory (``keep_up_to``)."""
        if self._view is None or not self.on_disk:
            return
        if not self._fill:
            self._open()  # an empty file is a file too
            return
        aligned = self._fill - self._fill % _ALIGN
        if self._direct_on and aligned:
            self._write_out(aligned)
        self._set_direct(False)
        self._direct = False  # the offset is no longer aligned after the tail
        self._write_out(self._fill)

    def close(self) -> None:
        """Flush and close (idempotent).  The staging buffer goes back to the pool."""
        if self._view is None:
            return
        try:
            self.flush()
            if not self.on_disk:  # kept whole: no file
                self._head = self.head
        finally:
            self._release()

    def discard(self) -> None:
        """Close without writing what is staged (after a failure, which it must not mask)."""
        if self._view is not None:
            with contextlib.suppress(OSError):
                self._release()

    def _release(self) -> None:
        view, buffer = self._view, self._buffer
        self._view = self._buffer = None
        if view is not None:
            view.release()
        if buffer is not None:
            _give_back(buffer)
        if self._fd is not None:
            os.close(self._fd)

    def _write_out(self, count: int) -> None:
        """Write the first ``count`` staged bytes to the file and keep the rest staged."""
        view = self._view
        assert view is not None
        fd = self._open()
        if self._head is None:
            self._head = bytes(view[: min(self._fill, HEAD_BYTES)])
        if count % _ALIGN == 0 and self._direct:
            self._set_direct(True)
        done = 0
        while done < count:
            try:
                done += os.write(fd, view[done:count])
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self._direct_on:
                    raise
                self._set_direct(False)  # this file system refuses O_DIRECT writes
                self._direct = False
        if done % _ALIGN:
            self._direct = False
        rest = self._fill - count
        if rest:
            view[:rest] = view[count : self._fill]
        self._fill = rest
        self._written += count

    def _open(self) -> int:
        """The file's descriptor, creating the file (never over an existing one)."""
        if self._fd is None:
            self._fd = os.open(
                self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
            )
        return self._fd

    def _set_direct(self, on: bool) -> None:
        if on == self._direct_on:
            return
        assert self._fd is not None
        try:
            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
        except OSError:
            if on:
                self._direct = False
                return
            raise
        self._direct_on = on
