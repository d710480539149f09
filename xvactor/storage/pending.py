"""Small instances the catalog holds until they are durable at their final names.

A Success status means the SCP has stored the instance (PS3.4 B.2.3).  For a small
instance, the device cache flushes that make it durable are most of what it costs: an
fsync of its file, one of its directory and one of the catalog's WAL, each a flush on a
disk that serves one at a time.  So a small received instance (its whole Part 10 file no
larger than ``inline_max_kb``) is made durable by the catalog commit that indexes it: its
bytes go into ``pending_files`` in the same transaction as its row.  ONE flush, the WAL's,
shared by every instance of a commit group, makes both durable before the Success status.
This is the write-ahead log of a database used as the ingest journal.

Before that commit, the receiving thread has also put the file at its final name, as for
any instance (written to a spool file, linked at ``studies/<Study>/<Series>/<SOP>.dcm``
if that name is free, ``xvactor.storage.placement``), only without an fsync: when the
Success status goes out, the instance is both durable (in the catalog) and at its name
(in the page cache), and the row is marked ``placed``.  A :class:`Materializer`, one
thread beside each catalog writer woken once per ``GATHER`` of commits that held bytes,
then makes those files durable where they are (one ``syncfs`` for the whole batch where
Linux reports its write-back errors, else an fsync of each file and directory) and only
then deletes their pending rows.

A held instance whose name was taken when it arrived (a file without a row, or a row the
``overwrite`` policy replaces) is not placed; the materializer writes it:

1. its bytes are written to a scratch file;
2. if still pending, it is renamed to its final name.  When rows may be replaced (the
   ``overwrite`` policy), that check and the renames run under the catalog's write lock:
   an overwrite deletes the pending row of the copy it replaces in its own transaction, so
   an older copy never lands over a newer one (and under that policy placed rows are
   written again too).  Otherwise nobody but a materializer ever deletes a pending row,
   and the renames need no lock.  A file another process linked there without the lock is
   replaced, and that process finds it no longer its own (``xvactor.storage.placement``);
3. then made durable as above, and its row deleted.

A crash or a failure anywhere leaves the pending row, and so the bytes: every catalog
writer writes what is pending (from any process, placed or not) when it starts, and a
reader that needs the file (C-MOVE, C-GET) calls :func:`materialize_paths` first.  A file
at a final name whose row is still pending may be incomplete after a power loss; it is
rewritten from the catalog before anyone reads it through the node.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import cast

from xvactor.catalog.turn import WriteTurn
from xvactor.dicom.part10 import fsync_directory
from xvactor.storage.placement import write_file

__all__ = [
    "PENDING_DIR",
    "Materializer",
    "hold",
    "materialize",
    "materialize_all",
    "materialize_paths",
    "release",
]

LOGGER = logging.getLogger("xvactor.storage")

PENDING_DIR = ".pending"
"""Scratch files of materializers, under the data directory (same file system)."""

BATCH = 256
"""Pending files written per batch (one flush, one or two write-lock holds)."""

GATHER = 0.05
"""Seconds a woken materializer lets more commits come before it writes (fewer, larger
batches: each costs a device flush and the catalog's write lock, which the receive
processes' commits wait for)."""


def hold(
    conn: sqlite3.Connection, path: str, content: bytes, owner: str, *, placed: bool = False
) -> None:
    """Keep ``content`` as the file at ``path`` until durable there (inside a transaction).

    For a new row, or for one just replaced once its previous path was released
    (:func:`release`): at most one copy is held per path.  ``placed``: these bytes are at
    ``path`` already, written by this process but not yet made durable there.
    """
    conn.execute(
        "INSERT INTO pending_files (path, content, owner, placed) VALUES (?, ?, ?, ?)",
        (path, content, owner, int(placed)),
    )


def release(conn: sqlite3.Connection, path: str) -> None:
    """Forget what is pending for ``path`` (its row was replaced; inside a transaction)."""
    conn.execute("DELETE FROM pending_files WHERE path = ?", (path,))


def materialize_paths(conn: sqlite3.Connection, root: Path, paths: Sequence[str]) -> int:
    """Write at their final names those of ``paths`` still pending; returns how many.

    For a reader about to open instance files (``paths`` relative to ``root``).  ``conn``
    must be able to write (not ``query_only``).

    Raises
    ------
    OSError
        A file could not be written (its bytes stay pending).
    """
    keys: list[int] = []
    unique = sorted(set(paths))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        marks = ",".join("?" * len(chunk))
        keys.extend(
            int(row[0])
            for row in conn.execute(
                f"SELECT pending_pk FROM pending_files WHERE path IN ({marks})",  # noqa: S608
                chunk,
            )
        )
    done = 0
    for start in range(0, len(keys), BATCH):
        done += materialize(conn, root, keys=keys[start : start + BATCH])
    return done


def materialize_all(conn: sqlite3.Connection, root: Path) -> int:
    """Write every pending file at its final name (any process's); returns how many rows.

    Raises
    ------
    OSError
        A file could not be written (it and those after it stay pending).
    """
    total = 0
    while taken := materialize(conn, root):
        total += taken
    return total


def materialize(
    conn: sqlite3.Connection,
    root: Path,
    *,
    keys: Sequence[int] | None = None,
    owner: str | None = None,
    limit: int = BATCH,
    locked: bool = True,
    turn: AbstractContextManager[object] | None = None,
    trust_placed: bool = False,
) -> int:
    """Write one batch of pending files at their final names (see the module docstring).

    The batch: the rows ``keys``, else the oldest ``limit`` of ``owner`` (``None``: of
    anyone).  Returns how many pending rows the batch took: 0 when none was left.

    ``trust_placed``: a row marked ``placed`` has its bytes at its name already and is
    only made durable there, not written again.  Only for the process that placed them,
    while it runs (after a crash the file may be incomplete: recovery writes every row).

    ``locked=False`` renames without the catalog's write lock (which every receive
    process's commits wait for): safe when no pending row can be released by anyone else,
    i.e. when no row is ever replaced (the duplicate policy is not ``overwrite``) and the
    rows are this writer's own.  ``turn``: taken around each write to the catalog
    (``xvactor.catalog.turn``).

    Raises
    ------
    OSError
        A file could not be written or made durable (its bytes stay pending).
    """
    # The bytes only of rows to write (a placed row trusted is only made durable).
    columns = (
        "pending_pk, path, CASE WHEN placed THEN NULL ELSE content END"
        if trust_placed
        else "pending_pk, path, content"
    )
    if keys is not None:
        marks = ",".join("?" * len(keys))
        rows = conn.execute(
            f"SELECT {columns} FROM pending_files WHERE pending_pk IN ({marks})",  # noqa: S608
            list(keys),
        ).fetchall()
    elif owner is not None:
        rows = conn.execute(
            f"SELECT {columns} FROM pending_files WHERE owner = ? "  # noqa: S608
            "ORDER BY pending_pk LIMIT ?",
            (owner, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {columns} FROM pending_files ORDER BY pending_pk LIMIT ?",  # noqa: S608
            (limit,),
        ).fetchall()
    if not rows:
        return 0
    scratch = root / PENDING_DIR
    prefix = f"{scratch}/{os.getpid()}-{threading.get_ident()}-"
    written: dict[int, tuple[str, str]] = {}
    there: list[int] = []  # rows whose bytes are at their names already (placed, trusted)
    placed: list[int] = []
    directories: list[str] = []
    done: list[int] = []
    try:
        for pk, relative, content in rows:
            if content is None:
                there.append(int(pk))
                continue
            if not written:
                scratch.mkdir(exist_ok=True)
            temporary = f"{prefix}{pk}.tmp"
            _write(temporary, content)
            written[int(pk)] = (temporary, str(relative))
        if written:
            with turn or nullcontext():
                placed, directories = _rename(conn, root, written, locked=locked)
        paths = {int(pk): str(relative) for pk, relative, _ in rows}
        done = there + placed
        for pk in there:  # their directories may be new too (linked, not made durable)
            directories.extend(_ancestors(root, paths[pk]))
        _make_durable(root, [os.fspath(root / paths[pk]) for pk in done], directories)
    finally:
        for temporary, _ in written.values():
            _unlink_quietly(temporary)  # those not renamed
    if not done:
        return len(rows)  # all replaced since by newer rows: nothing left to do
    marks = ",".join("?" * len(done))
    # Lost on a power loss at worst: then the same bytes are written again at the same name.
    with turn or nullcontext():
        conn.execute(f"DELETE FROM pending_files WHERE pending_pk IN ({marks})", done)  # noqa: S608
    return len(rows)


def _rename(
    conn: sqlite3.Connection, root: Path, written: dict[int, tuple[str, str]], *, locked: bool
) -> tuple[list[int], list[str]]:
    """Rename each scratch file whose row is still pending (``locked``: checked again
    under the write lock); returns their keys and the directories whose entries changed."""
    if not locked:
        return _rename_each(root, written, sorted(written))
    conn.execute("BEGIN IMMEDIATE")
    try:
        marks = ",".join("?" * len(written))
        still = {
            int(row[0])
            for row in conn.execute(
                f"SELECT pending_pk FROM pending_files WHERE pending_pk IN ({marks})",  # noqa: S608
                list(written),
            )
        }
        return _rename_each(root, written, sorted(still))
    finally:
        conn.execute("COMMIT")  # nothing was written: this only gives the lock back


def _rename_each(
    root: Path, written: dict[int, tuple[str, str]], keys: list[int]
) -> tuple[list[int], list[str]]:
    placed: list[int] = []
    directories: list[str] = []
    top = os.fspath(root)
    for pk in keys:
        temporary, relative = written[pk]
        final = f"{top}/{relative}"
        parent = final.rpartition("/")[0]
        try:  # the series directory usually exists: no stat first
            os.replace(temporary, final)
        except FileNotFoundError:
            if not os.path.exists(temporary):
                raise
            directories.extend(_make_directories(root, Path(parent)))
            os.replace(temporary, final)
        placed.append(pk)
        directories.append(parent)
    return placed, directories


def _ancestors(root: Path, relative: str) -> list[str]:
    """The directories between ``root`` and the file ``relative`` (innermost first)."""
    parts = relative.split("/")[:-1]
    top = os.fspath(root)
    return ["/".join([top, *parts[:end]]) for end in range(len(parts), 0, -1)]


def _make_directories(root: Path, directory: Path) -> list[str]:
    """``mkdir -p`` below ``root``; the parents whose entries changed (to fsync)."""
    missing: list[Path] = []
    current = directory
    while current != root and not current.is_dir():
        missing.append(current)
        current = current.parent
    changed: list[str] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        changed.append(os.fspath(path.parent))
    return changed


def _write(path: str, content: bytes) -> None:
    write_file(path, content, exclusive=False)  # a scratch file a failed batch left


def _make_durable(root: Path, files: list[str], directories: list[str]) -> None:
    """Make ``files`` and the entries of ``directories`` durable."""
    if not files:
        return
    if _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"syncfs: {os.strerror(code)}")
        finally:
            os.close(fd)
        return
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for directory in sorted(set(directories), key=len, reverse=True):
        fsync_directory(directory)


def _load_syncfs() -> Callable[[int], int] | None:
    """``syncfs(2)``, where it reports write-back errors (Linux 5.8 and later)."""
    if platform.system() != "Linux":
        return None
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast("Callable[[int], int]", function)


_SYNCFS = _load_syncfs()


def _clear_scratch(scratch: Path) -> None:
    """Remove scratch files of processes that are gone (a crash mid-batch left them).

    Their bytes are still held by the catalog; a live process's files are left alone.
    """
    try:
        names = os.listdir(scratch)
    except FileNotFoundError:
        return
    for name in names:
        pid = name.partition("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        _unlink_quietly(os.fspath(scratch / name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        LOGGER.warning("cannot remove scratch file %s: %s", path, exc)


class Materializer:
    """Writes this writer's pending files in the background (see the module docstring).

    Parameters
    ----------
    database : Path
        The catalog.
    root : Path
        The data directory (pending paths are relative to it).
    overwrites : bool
        Rows may be replaced (the ``overwrite`` duplicate policy): rename only under the
        write lock (see :func:`materialize`).
    """

    def __init__(self, database: Path, root: Path, *, overwrites: bool = True) -> None:
        self._database = database
        self._root = root
        self._locked = overwrites
        self.owner = uuid.uuid4().hex
        """Marks the pending rows of this process's writer."""
        self._wake = threading.Condition()
        self._due = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Write what anyone left pending, then serve this writer (blocking until begun).

        Raises
        ------
        sqlite3.Error
            The catalog cannot be opened.
        """
        conn = self._open()
        _clear_scratch(self._root / PENDING_DIR)
        try:
            materialize_all(conn, self._root)
        except (OSError, sqlite3.Error) as exc:  # kept pending; readers write their own
            LOGGER.warning("pending files not yet written at their names: %s", exc)
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="xvactor-materializer", daemon=True
        )
        self._thread.start()

    def notify(self) -> None:
        """A commit held bytes of this writer (called by the writer thread after it)."""
        with self._wake:
            if not self._due:  # woken once per batch, not once per commit
                self._due = True
                self._wake.notify()

    def stop(self) -> None:
        """Write what this writer left pending, then end the thread (blocking)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify()
        thread.join()

    def _open(self) -> sqlite3.Connection:
        from xvactor.catalog.sqlite import open_catalog  # noqa: PLC0415 - no import cycle

        conn = open_catalog(self._database)
        # Deleting a pending row need not wait for the disk: if that commit is lost, the
        # same bytes are written again at the same name.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _run(self, conn: sqlite3.Connection) -> None:
        turn = WriteTurn(self._database)
        try:
            while True:
                with self._wake:
                    while not self._due and not self._stopping:
                        self._wake.wait()
                    # Commits meanwhile find ``_due`` set and wake nobody.
                    self._wake.wait_for(lambda: self._stopping, timeout=GATHER)
                    self._due, stopping = False, self._stopping
                self._drain(conn, turn)
                if stopping:
                    return
        finally:
            turn.close()
            conn.close()

    def _drain(self, conn: sqlite3.Connection, turn: WriteTurn) -> None:
        try:
            while materialize(
                conn,
                self._root,
                owner=self.owner,
                locked=self._locked,
                turn=turn,
                # Under ``overwrite`` another process may replace a file at its name
                # inside a transaction that then fails: a placed row is written again.
                trust_placed=not self._locked,
            ):
                pass
        except (OSError, sqlite3.Error) as exc:  # kept pending; the next commit retries
            LOGGER.warning("pending files not yet written at their names: %s", exc)
