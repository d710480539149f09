"""Putting spooled files at their final names, as part of the catalog's commit.

An instance is filed in this order (``xvactor.catalog.writer``):

1. on the filing thread (a receiving association's own), link the spool file to
   ``studies/<Study>/<Series>/<SOP>.dcm`` if that name is free (creating the
   directories), then fsync the file and then the directories that changed: all before
   the catalog's write lock, which other receive processes wait for, and in parallel
   with other associations (whose fsyncs share the file system's journal commits);
2. the catalog writer thread takes every instance queued into one write transaction and
   decides each row; a name that was taken is settled there (below), and what it places
   is made durable the same way before COMMIT;
3. COMMIT the rows, then remove linked files whose row was not written.

A row is therefore never durable before its file.  Linking before the fsync lets ext4 make
the file's data, its inode and its new directory entry durable in ONE journal commit (the
directory fsync then finds nothing left to write): two device flushes per instance (file,
catalog) instead of three, and concurrent instances share them.  Where every fsync is a
device flush (ext4 without a journal, as on the VMs measured here), the directory fsyncs
still run on the filing threads, in parallel: doing them once per group on the writer
thread, inside the commit's critical path, measured 4-6% slower with four associations.
Instead, a directory fsync that began after another thread's link covers that link too
(``xvactor.storage.dirsync``): associations storing one series share them.

A file at a final name without a row is an orphan: from a group that failed, or left by a
crash (complete or not); the node sets aside those of earlier runs when it starts
(``xvactor.storage.orphans``).  A taken name is settled under the write transaction: if
a row refers to it, the file is replaced only under the ``overwrite`` policy; if none does, no
committed row can ever refer to that file, so it is replaced.  Another process's group
may have linked that name a moment before and not committed yet; when it commits it finds
this row and, under ``keep_first``, keeps it and leaves the file alone, or, under
``overwrite``, sees its file is no longer there (inode) and puts it back before writing
its row: a row always describes the bytes at its path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from xvactor.storage.dirsync import DirectorySync

__all__ = ["GroupPlacement", "Linked", "Placement", "write_file"]

_DIRECTORY_CACHE = 4096
"""Series directories remembered as existing (the cache is cleared when full)."""


@dataclass(frozen=True)
class Linked:
    """A spool file linked at its final name and made durable, before the transaction."""

    final: str
    inode: int


class Placement:
    """Places files under ``root``; thread-safe."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._directories: set[str] = set()
        """Series directories known to exist (set operations are atomic under the GIL)."""
        self.syncs = DirectorySync()
        """Directory fsyncs, shared by the threads placing files in one directory."""

    def group(self) -> GroupPlacement:
        """Start placing the files of one commit group."""
        return GroupPlacement(self)

    def link_durably(self, spool: str, relative: str) -> Linked | None:
        """Step 1 for one file, on the caller's thread: ``None`` if the name is taken.

        Concurrent callers' fsyncs share the file system's journal commits, and the
        catalog writer is left with the transaction alone.

        Raises
        ------
        OSError
            The file could not be linked or made durable (then it is not left linked).
        """
        placing = GroupPlacement(self)
        if not placing.link_new(spool, relative):
            return None
        try:
            placing.make_durable()
        except OSError:
            placing.take_back()
            raise
        return placing.first()

    def link_unsynced(
        self, spool: str, relative: str, content: bytes | None = None
    ) -> Linked | None:
        """Link ``spool`` at ``relative`` if that name is free, WITHOUT making it durable
        there: for a file the catalog's commit holds (``xvactor.storage.pending``), whose
        materializer makes it durable after.  ``None`` if the name is taken.

        ``content``: first create ``spool`` with these bytes; its name is removed again
        (the file keeps its final one).  Without, ``spool`` holds the file already.

        Raises
        ------
        OSError
            The file could not be created or linked (then nothing is left of it).
        """
        if content is not None:
            if os.path.lexists(f"{self._root}/{relative}"):
                return None  # taken (a duplicate): no file created only to be deleted
            write_file(spool, content, exclusive=True)
        placing = GroupPlacement(self)
        try:
            if not placing.link_new(spool, relative):
                return None
        finally:
            if content is not None:
                _unlink_quietly(spool)  # the file is at its final name, or not kept
        return placing.first()

    def unlink(self, linked: Linked) -> None:
        """Take back a file :meth:`link_durably` linked (if it is still that file)."""
        placing = GroupPlacement(self)
        placing.adopt(linked)
        placing.take_back()

    def _make_directory(self, relative_directory: str, created: list[str]) -> None:
        """``mkdir -p`` below the root, noting each directory made (outermost first)."""
        directory = f"{self._root}/{relative_directory}"
        if directory in self._directories:
            return
        missing: list[str] = []
        current = directory
        while current != self._root and not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            created.append(path)
        if len(self._directories) >= _DIRECTORY_CACHE:
            self._directories.clear()
        self._directories.add(directory)

    def _forget(self, relative_directory: str) -> None:
        self._directories.discard(f"{self._root}/{relative_directory}")


@dataclass
class GroupPlacement:
    """The files placed for one commit group, to make durable or to take back."""

    placement: Placement
    placed: list[str] = field(default_factory=list)
    """Final paths this group created (removed again if the group fails)."""
    unsynced: list[str] = field(default_factory=list)
    """Files placed (created or replaced) and not yet fsynced."""
    directories: dict[str, int] = field(default_factory=dict)
    """Directories that gained an entry, or were created, and are not yet fsynced, with
    the latest such entry's number (``DirectorySync.entered``)."""
    inodes: dict[str, int] = field(default_factory=dict)
    """The inode each created final path got, to tell it from a later replacement."""

    def link_new(self, spool: str, relative: str) -> bool:
        """Link ``spool`` to ``relative`` if nothing is there; ``False`` if a file is.

        Runs before the write transaction: a name nobody holds can be taken without it.

        Raises
        ------
        OSError
            The link or a directory could not be made (disk full, permissions...).
        """
        placement = self.placement
        directory, _ = relative.rsplit("/", 1)
        final = f"{placement._root}/{relative}"
        # The inode from our own spool name, never from ``final``: another process may
        # replace ``final`` (an orphan to it) the moment after our link.
        inode = os.stat(spool).st_ino
        created: list[str] = []
        placement._make_directory(directory, created)
        try:
            os.link(spool, final)
        except FileNotFoundError:
            if not os.path.exists(spool):
                raise
            placement._forget(directory)  # the directory went away under us
            placement._make_directory(directory, created)
            os.link(spool, final)
        except FileExistsError:
            return False
        finally:
            for path in created:
                self._entered(os.path.dirname(path))
        self._took(final, directory)
        self.placed.append(final)
        self.inodes[final] = inode
        return True

    def first(self) -> Linked:
        """The first file this group linked, as :meth:`adopt` takes it back."""
        final = self.placed[0]
        return Linked(final=final, inode=self.inodes[final])

    def place(self, spool: str, relative: str, *, catalogued: bool) -> None:
        """Put ``spool`` at ``relative``, where a file already is (inside the transaction).

        ``catalogued``: a committed row refers to that name (the ``overwrite`` policy is
        replacing it).  Otherwise the file found there is an orphan (see the module
        docstring); either way it is replaced.

        Raises
        ------
        OSError
            The file could not be replaced.
        """
        directory, _ = relative.rsplit("/", 1)
        final = f"{self.placement._root}/{relative}"
        os.replace(spool, final)
        self._took(final, directory)
        if not catalogued:
            self.placed.append(final)

    def still_ours(self, relative: str) -> bool:
        """Whether the file this group linked at ``relative`` is still there (same inode)."""
        final = f"{self.placement._root}/{relative}"
        return final in self.inodes and _still(final, self.inodes[final])

    def _took(self, final: str, directory: str) -> None:
        self.unsynced.append(final)
        self._entered(f"{self.placement._root}/{directory}")

    def _entered(self, directory: str) -> None:
        self.directories[directory] = self.placement.syncs.entered()

    def make_durable(self) -> None:
        """fsync every file placed since the last call, then the directories that changed."""
        for path in self.unsynced:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.unsynced.clear()
        syncs = self.placement.syncs
        for directory in sorted(self.directories, key=len, reverse=True):
            syncs.sync(directory, self.directories[directory])
        self.directories.clear()

    def drop(self, relatives: list[str]) -> None:
        """Remove these placed files now (no row will refer to them).

        Call inside the write transaction: a file another process put at the same name
        since (under its own transaction) has another inode and is left alone.
        """
        finals = {f"{self.placement._root}/{relative}" for relative in relatives}
        for path in finals:
            if path not in self.placed:
                continue
            self.placed.remove(path)
            if _still(path, self.inodes.get(path)):
                _unlink_quietly(path)

    def adopt(self, linked: Linked) -> None:
        """Count a file linked by :meth:`Placement.link_durably` as this group's."""
        self.placed.append(linked.final)
        self.inodes[linked.final] = linked.inode

    def take_back(self) -> None:
        """Remove what this group created (the group failed; no row refers to it)."""
        for path in self.placed:
            if _still(path, self.inodes.get(path)):
                _unlink_quietly(path)
        self.placed.clear()


def _still(path: str, inode: int | None) -> bool:
    """Whether ``path`` is still the file that got ``inode`` (``None``: not recorded)."""
    if inode is None:
        return True
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def write_file(path: str, content: bytes, *, exclusive: bool) -> None:
    """Write ``content`` as the file ``path`` (not fsynced).

    ``exclusive``: never over an existing file; otherwise an existing one is truncated
    first.  A file that could not be written whole is removed again.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        return
