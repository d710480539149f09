"""Putting spooled files at their final names, inside the catalog's commit.

The catalog writer (``xvactor.catalog.writer``) places the files of a commit group while
it holds the catalog's write transaction, then makes them durable, then commits:

1. for each instance whose row is to be written, link its spool file to
   ``studies/<Study>/<Series>/<SOP>.dcm`` (creating the directories);
2. fsync every placed file, then every directory that gained an entry;
3. COMMIT the rows.

A row is therefore never durable before its file.  Placing before the fsync lets ext4 make
the file's data, its inode and its new directory entry durable in ONE journal commit (the
directory fsync then finds nothing left to write), and the files of a whole group share
that commit: measured here, that is one device flush per group instead of three per
instance.

A file at a final name without a row is an orphan: a group that failed (its files are
removed, but a crash may leave one behind, complete or not).  Since placing happens under
the write transaction, no other writer can be half-way through placing that name, so an
orphan is simply replaced.  A file whose row exists is never replaced unless the policy
is ``overwrite``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from xvactor.dicom.part10 import fsync_directory

__all__ = ["GroupPlacement", "Placement"]

_DIRECTORY_CACHE = 4096
"""Series directories remembered as existing (the cache is cleared when full)."""


class Placement:
    """Places files under ``root``; used by the one writer thread of a process."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._directories: set[str] = set()

    def group(self) -> GroupPlacement:
        """Start placing the files of one commit group."""
        return GroupPlacement(self)

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
    directories: set[str] = field(default_factory=set)
    """Directories that gained an entry, or were created, in this group."""
    replaced: list[str] = field(default_factory=list)
    """Final paths this group overwrote (the old content is gone either way)."""

    def place(self, spool: str, relative: str, *, catalogued: bool) -> None:
        """Put ``spool`` at ``relative``.

        ``catalogued``: a committed row refers to that name (the ``overwrite`` policy is
        replacing it), so its file is replaced outright.  Otherwise a file found there is
        an orphan (see the module docstring) and is replaced too.

        Raises
        ------
        OSError
            The link or a directory could not be made (disk full, permissions...).
        """
        placement = self.placement
        directory, _ = relative.rsplit("/", 1)
        final = f"{placement._root}/{relative}"
        if catalogued:
            os.replace(spool, final)
            self.replaced.append(final)
            self.directories.add(f"{placement._root}/{directory}")
            return
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
            os.replace(spool, final)  # an orphan: no row refers to it
        self.placed.append(final)
        for path in created:
            self.directories.add(os.path.dirname(path))
        self.directories.add(f"{placement._root}/{directory}")

    def make_durable(self) -> None:
        """fsync every placed file, then every directory that changed (PS3.4 B.2.3)."""
        for path in (*self.placed, *self.replaced):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for directory in sorted(self.directories, key=len, reverse=True):
            fsync_directory(directory)

    def drop(self, relatives: list[str]) -> None:
        """Remove these placed files now (their rows were rolled back)."""
        finals = {f"{self.placement._root}/{relative}" for relative in relatives}
        for path in finals:
            if path in self.placed:
                self.placed.remove(path)
                _unlink_quietly(path)

    def take_back(self) -> None:
        """Remove what this group created (the group failed; no row refers to it)."""
        for path in self.placed:
            _unlink_quietly(path)
        self.placed.clear()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        return
