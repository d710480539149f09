"""The catalog's writer thread: instances filed from any thread, committed in groups.

One thread owns the catalog connection.  Callers on any thread (a receiving association's
own thread, or a worker thread of an actor) link and fsync their instance's file at its
final name, queue a request and block on its ticket; the writer takes every request queued
so far into ONE transaction (group commit), settles the files whose name was taken,
commits, and answers each from that commit (``xvactor.storage.placement``).  A small
instance is linked but not fsynced: its whole file is held in the commit with its row
and made durable at its name just after (``xvactor.storage.pending``).  Concurrent
C-STOREs therefore share one catalog fsync, and a reply never precedes the commit that
holds its row.  While a commit runs, new requests gather in the queue and form the next
group.

Why a thread and not the event loop: handing a request to the loop and back costs two
thread wake-ups (about 0.4 ms measured in place on the 2-core VM this runs on, more than
the commit itself), paid by every C-STORE.  A receiving thread queues straight to the writer
and waits on a ``threading.Event``: one wake-up each way.

The queue is bounded (``capacity``): when it is full, callers block, which stops their
association reading its socket, which slows the peer through TCP.  Every wait has a
deadline; a request whose commit does not finish in time raises ``CommitPending``.  Its
commit may still land later, file and row together (a file linked for a request that never
commits is an orphan: no row refers to it, the next store of that instance replaces it,
and the next start of the node sets it aside, ``xvactor.storage.orphans``).
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from xvactor.catalog.sqlite import IndexOutcome, open_catalog, write_batch
from xvactor.catalog.turn import WriteTurn
from xvactor.catalog.walsync import WalSync
from xvactor.dicom.records import InstanceRecord
from xvactor.dicom.status import OutOfResources
from xvactor.storage.pending import Materializer, hold, release
from xvactor.storage.placement import Linked, Placement

__all__ = ["COMMIT_DELAY", "CatalogWriter", "CommitPending"]

LOGGER = logging.getLogger("xvactor.catalog")

T = TypeVar("T")

COMMIT_DELAY = 0.001
"""Seconds a group stays open for announced requests (see ``CatalogWriter.begin_filing``)."""


class CommitPending(OutOfResources):
    """The request was queued but its commit did not finish in time; it may still land."""


@dataclass
class _Ticket(Generic[T]):
    """One queued job and, once done, its outcome."""

    done: threading.Event = field(default_factory=threading.Event)
    value: T | None = None
    error: BaseException | None = None

    def settle(self, value: T | None, error: BaseException | None) -> None:
        self.value, self.error = value, error
        self.done.set()

    def wait(self, timeout: float, what: str) -> T:
        if not self.done.wait(timeout):
            raise CommitPending(f"Catalog busy: {what} not done in {timeout:g} s, retry")
        if self.error is not None:
            raise self.error
        return cast(T, self.value)


@dataclass
class _Index:
    record: InstanceRecord
    replace: bool
    ticket: _Ticket[IndexOutcome]
    spool: str | None = None
    """A spooled file to place at ``record.path`` in the same commit."""
    linked: Linked | None = None
    """The spooled file, already linked at ``record.path`` and durable (step 1); with
    ``content``, linked but not durable."""
    content: bytes | None = None
    """The whole file, to hold in the catalog until durable at ``record.path``
    (``xvactor.storage.pending``)."""


@dataclass
class _Call:
    func: Callable[[sqlite3.Connection], Any]
    ticket: _Ticket[Any]


_STOP = object()


class CatalogWriter:
    """Owns the catalog connection on one thread; see the module docstring.

    Parameters
    ----------
    path : Path
        The catalog database file.
    capacity : int
        Requests that may wait in the queue; more block their callers.
    files : Path, optional
        The data directory that instance paths are relative to (needed by :meth:`file`).
    overwrites : bool
        Whether any writer of this catalog may replace a row (the ``overwrite`` duplicate
        policy; ``xvactor.storage.pending``).
    """

    def __init__(
        self, path: Path, *, capacity: int, files: Path | None = None, overwrites: bool = True
    ) -> None:
        self._path = path
        self._placement = Placement(os.fspath(files)) if files is not None else None
        self._materializer = (
            Materializer(path, files, overwrites=overwrites) if files is not None else None
        )
        self._queue: queue.Queue[_Index | _Call | object] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._preparing = 0
        """Threads that announced a request (:meth:`begin_filing`) and have not queued it."""
        self._preparing_lock = threading.Lock()
        self._failure: OutOfResources | None = None
        """Why every request now fails (the WAL could not be flushed), if it does."""

    @property
    def queued(self) -> int:
        """Requests waiting for the writer (for tests and diagnostics)."""
        return self._queue.qsize()

    def start(self) -> None:
        """Open the catalog on a new writer thread (blocking; raises if it cannot open)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._failure = None
            opened: _Ticket[sqlite3.Connection] = _Ticket()
            thread = threading.Thread(
                target=self._run, args=(opened,), name="xvactor-catalog", daemon=True
            )
            thread.start()
            opened.done.wait()
            if opened.error is not None:
                thread.join()
                raise opened.error
            self._thread = thread
            if self._materializer is not None:
                self._materializer.start()

    def stop(self) -> None:
        """Finish what is queued, close the connection, end the thread (blocking)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join()
        if self._materializer is not None:
            self._materializer.stop()

    def index(self, record: InstanceRecord, *, replace: bool, timeout: float) -> IndexOutcome:
        """Index ``record``; returns after the commit that holds it (blocking).

        Raises
        ------
        OutOfResources
            The writer is not running, its queue stayed full, or the commit did not finish
            within ``timeout`` seconds.
        sqlite3.DatabaseError
            The row (or the whole commit) failed.
        """
        ticket: _Ticket[IndexOutcome] = _Ticket()
        self._submit(_Index(record, replace, ticket), timeout)
        return ticket.wait(timeout, "commit")

    def begin_filing(self) -> None:
        """Announce a :meth:`file` request about to come (pair with ``announced=True``).

        While announced requests are on their way, the writer holds a group open for up
        to ``COMMIT_DELAY`` so that they share its commit (PostgreSQL's ``commit_delay``
        with ``commit_siblings``): one catalog fsync for several associations' instances.
        With nothing announced (one association), a group commits at once.
        """
        with self._preparing_lock:
            self._preparing += 1

    def end_filing(self) -> None:
        """The announced request was queued, or will not come."""
        with self._preparing_lock:
            self._preparing -= 1

    def file(
        self,
        record: InstanceRecord,
        spool: Path,
        *,
        replace: bool,
        timeout: float,
        announced: bool = False,
        content: bytes | None = None,
        spooled: bool = False,
    ) -> IndexOutcome:
        """Place ``spool`` at ``record.path`` and index it, in one commit (blocking).

        See ``xvactor.storage.placement``: the file is durable before the row commits, and
        nothing is placed when the row is not written (a kept duplicate).  With
        ``content`` (the whole file, small), the commit holds it, and the file is put at
        ``record.path`` before (created at ``spool`` first, unless ``spooled``: ``spool``
        holds those bytes already) but made durable there after
        (``xvactor.storage.pending``).  Raises as :meth:`index`, and ``OSError`` when the
        file could not be placed or made durable (then neither file nor row is left).
        """
        try:
            placement = self._placement
            if placement is None:
                raise RuntimeError("this catalog writer files no instances")
            thread = self._thread
            if thread is None or not thread.is_alive():
                raise OutOfResources("Catalog is not running, retry later")
            if self._failure is not None:
                raise self._failure
            if content is None:  # on this thread, in parallel with other associations
                linked = placement.link_durably(os.fspath(spool), record.path)
            else:  # durable through the commit
                linked = placement.link_unsynced(
                    os.fspath(spool), record.path, None if spooled else content
                )
        finally:
            # Before queueing: a writer that sees this request must not wait for it.
            if announced:
                self.end_filing()
        ticket: _Ticket[IndexOutcome] = _Ticket()
        try:
            job = _Index(
                record,
                replace,
                ticket,
                None if content is not None else os.fspath(spool),
                linked,
                content,
            )
            self._submit(job, timeout)
        except BaseException:
            if linked is not None:
                placement.unlink(linked)
            raise
        return ticket.wait(timeout, "commit")

    def call(self, func: Callable[[sqlite3.Connection], T], *, timeout: float) -> T:
        """Run ``func(connection)`` on the writer thread, between commits (blocking)."""
        ticket: _Ticket[T] = _Ticket()
        self._submit(_Call(func, ticket), timeout)
        return ticket.wait(timeout, "catalog request")

    def _submit(self, job: _Index | _Call, timeout: float) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            raise OutOfResources("Catalog is not running, retry later")
        if self._failure is not None:
            raise self._failure
        try:
            self._queue.put(job, timeout=timeout)
        except queue.Full:
            raise OutOfResources("Catalog saturated, retry later") from None

    # --- the writer thread ---------------------------------------------------------------

    def _run(self, opened: _Ticket[sqlite3.Connection]) -> None:
        try:
            conn = open_catalog(self._path)
        except BaseException as exc:
            opened.settle(None, exc)
            return
        opened.settle(conn, None)
        turn = WriteTurn(self._path)
        wal = WalSync(self._path)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")  # each commit is flushed by ``wal``
            self._serve(conn, turn, wal)
        finally:
            wal.close()
            turn.close()
            conn.close()

    def _serve(self, conn: sqlite3.Connection, turn: WriteTurn, wal: WalSync) -> None:
        carried: _Index | _Call | object | None = None
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is _STOP:
                return
            if isinstance(job, _Call):
                _run_call(conn, job, wal)
                continue
            group = [cast(_Index, job)]
            carried = self._gather(group)
            answer = None
            with turn:  # what queued while another process wrote joins this group
                if carried is None:
                    carried = self._gather(group, wait=False)
                try:
                    answer = _commit(conn, group, self._placement, self._materializer)
                except Exception as exc:  # a bug must not end the thread with callers waiting
                    LOGGER.exception("catalog writer: commit of %d requests failed", len(group))
                    _fail(group, exc)
            if answer is None:
                continue
            try:
                wal.sync()  # after the turn: the other processes' commits go on meanwhile
            except OSError as exc:
                self._refuse_all(group, carried, exc)
                return
            answer()

    def _refuse_all(self, group: list[_Index], carried: object, exc: OSError) -> None:
        """The WAL could not be flushed: fail this group and every later request.

        After a failed fsync the kernel may have dropped what it could not write, so a
        later fsync that succeeds proves nothing (PostgreSQL's lesson): no commit of this
        connection is trusted any more.  The writer answers every request with the failure
        until it is stopped; the next start recovers the catalog.
        """
        LOGGER.error("catalog WAL not flushed; refusing every request until restarted: %s", exc)
        failure = OutOfResources(f"Catalog not flushed to disk: {exc.strerror or exc}")
        self._failure = failure
        _fail(group, failure)
        job = carried
        while True:
            if job is _STOP:
                return
            if isinstance(job, _Index | _Call):
                job.ticket.settle(None, failure)
            job = self._queue.get()

    def _gather(self, group: list[_Index], *, wait: bool = True) -> _Index | _Call | object | None:
        """Add to ``group`` what is queued, and (``wait``) what announced requests bring
        in time.

        Returns a job that cannot join the group (to run next), if one came.
        """
        deadline = time.monotonic() + (COMMIT_DELAY if wait else 0.0)
        while True:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._preparing <= 0 or remaining <= 0:
                    return None
                try:  # a blocking wait with a deadline, woken by the next request
                    more = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return None
            if not isinstance(more, _Index):
                return more
            group.append(more)


def _run_call(conn: sqlite3.Connection, job: _Call, wal: WalSync) -> None:
    changes = conn.total_changes
    try:
        value = job.func(conn)
        if conn.total_changes != changes:
            wal.sync()  # it wrote: durable before its answer
    except Exception as exc:
        job.ticket.settle(None, exc)
    else:
        job.ticket.settle(value, None)


def _commit(
    conn: sqlite3.Connection,
    group: list[_Index],
    placement: Placement | None,
    materializer: Materializer | None,
) -> Callable[[], None] | None:
    """File and index one group (see ``xvactor.storage.placement`` for the order).

    Returns what answers the group's callers, to call once the commit is durable
    (``xvactor.catalog.walsync``); ``None`` when the group failed (its callers have their
    answer).
    """
    files = placement.group() if placement is not None else None
    held = False
    linked: dict[int, bool] = {}
    for position, job in enumerate(group):
        if job.linked is not None and files is not None:
            files.adopt(job.linked)
        linked[position] = job.linked is not None

    def place(position: int, previous_path: str | None) -> None:
        nonlocal held
        job = group[position]
        if previous_path is not None:
            release(conn, previous_path)  # replaced: an older copy must not land after
        if job.content is not None:
            if materializer is None:  # file() needs ``files``, which gives a materializer
                raise RuntimeError("this catalog writer holds no files")
            # At its name already (linked before the transaction, not replaced since).
            placed = files is not None and linked[position] and files.still_ours(job.record.path)
            hold(conn, job.record.path, job.content, materializer.owner, placed=placed)
            held = True
            return
        if files is None or job.spool is None:
            return  # nothing to place
        relative = job.record.path
        if linked.get(position) and files.still_ours(relative):
            return  # linked under its own name already
        # The name was taken, or another process's group replaced what we linked there.
        files.place(job.spool, relative, catalogued=previous_path == relative)

    def settle_files(outcomes: list[IndexOutcome | Exception]) -> None:
        if files is None:
            return
        unreferenced = [
            group[i].record.path
            for i, outcome in enumerate(outcomes)
            if linked.get(i) and (isinstance(outcome, Exception) or not outcome.written)
        ]
        files.drop(unreferenced)
        files.make_durable()  # what was placed inside the transaction

    try:
        outcomes = write_batch(
            conn,
            [(job.record, job.replace) for job in group],
            place=place,
            before_commit=settle_files,
        )
    except Exception as exc:
        if files is not None:
            files.take_back()
        _fail(group, exc)
        return None

    def answer() -> None:
        if held and materializer is not None:
            materializer.notify()
        for job, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):
                job.ticket.settle(None, outcome)
            else:
                job.ticket.settle(outcome, None)

    return answer


def _fail(group: list[_Index], exc: Exception) -> None:
    LOGGER.warning("catalog commit of %d rows failed: %s", len(group), exc)
    for job in group:
        job.ticket.settle(None, exc)
