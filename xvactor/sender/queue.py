"""The outbox: the queue of instances a sender has accepted for one destination.

Two implementations of one interface (:class:`Outbox`):

* :class:`DurableOutbox`, a table in ``<data_dir>/outbox.sqlite`` (WAL,
  ``synchronous=FULL``).  :meth:`Outbox.add` returns only after the rows are committed, so
  a request acknowledged to its requester survives a crash or a restart of the process.
  Every sender opens its own connection and sees only its destination's rows; other
  processes (``xvactor store --queue``) may add rows at the same time.
* :class:`MemoryOutbox`, the same in memory, for embedders who keep their own records.

An item moves ``queued`` -> ``sending`` -> ``sent`` or ``failed``, or back to ``queued``
with a later ``next_attempt_at`` after a retryable failure.  Opening a durable outbox puts
the items a crash left ``sending`` back to ``queued``: delivery is at least once, and the
destination's duplicate handling makes a resent instance harmless.

Every method blocks (SQLite); actors call them through ``run_blocking``.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import msgspec

__all__ = [
    "OUTBOX_FILE",
    "SENT_RETENTION",
    "DurableOutbox",
    "MemoryOutbox",
    "Outbox",
    "QueuedItem",
    "SendItem",
    "State",
    "open_outbox_db",
    "pending_destinations",
]

OUTBOX_FILE = "outbox.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    path TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_comment TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    enqueued_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_work ON outbox (destination, state, id);
"""

_COLUMNS = (
    "id, destination, path, sop_class_uid, sop_instance_uid, transfer_syntax_uid, state, "
    "attempts, next_attempt_at, last_status, last_comment, outcome"
)


SENT_RETENTION = 7 * 24 * 3600.0
"""Seconds a sent item stays in the durable outbox (as a record) before it is pruned."""


class State:
    """The states of an outbox item (plain strings, as stored)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class SendItem(msgspec.Struct, frozen=True, kw_only=True):
    """One instance to send: a Part 10 file and what it holds."""

    path: str
    """Absolute path of a Part 10 file."""
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    """The file's transfer syntax."""


class QueuedItem(msgspec.Struct, frozen=True, kw_only=True):
    """An item as the outbox holds it."""

    id: int
    destination: str
    item: SendItem
    state: str
    attempts: int = 0
    next_attempt_at: float = 0.0
    """Wall-clock time (``time.time()``) before which it is not attempted again."""
    last_status: int | None = None
    last_comment: str = ""
    outcome: str = ""
    """The classifier's verdict on the last attempt."""


class Outbox(ABC):
    """The queue of one destination (see the module docstring)."""

    blocking: ClassVar[bool] = True
    """Whether calls block (run them on a worker thread) or return at once."""

    def __init__(self, destination: str) -> None:
        self.destination = destination

    @abstractmethod
    def add(self, items: Sequence[SendItem], now: float) -> list[int]:
        """Queue ``items`` in order; return their ids once they are durable."""

    @abstractmethod
    def head(self, limit: int) -> list[QueuedItem]:
        """The first ``limit`` queued items, oldest first."""

    @abstractmethod
    def mark_sending(self, item_id: int, now: float) -> None:
        """An attempt on ``item_id`` starts."""

    @abstractmethod
    def record(
        self,
        item_id: int,
        *,
        state: str,
        attempts: int,
        next_attempt_at: float,
        status: int | None,
        comment: str,
        outcome: str,
        now: float,
    ) -> None:
        """Record the result of an attempt (the new state and the response)."""

    @abstractmethod
    def items(self, state: str) -> list[QueuedItem]:
        """Every item in ``state``, oldest first."""

    @abstractmethod
    def requeue(self, ids: Iterable[int] | None, now: float) -> int:
        """Put failed items (all of them if ``ids`` is ``None``) back in the queue, reset."""

    @abstractmethod
    def recover(self, now: float) -> int:
        """Put items left ``sending`` (by a crash) back in the queue; return how many."""

    @abstractmethod
    def count(self, state: str) -> int:
        """How many items are in ``state``."""

    def close(self) -> None:  # noqa: B027 - optional for implementations without resources
        """Release what the outbox holds."""


def _row(row: tuple[object, ...]) -> QueuedItem:
    (item_id, destination, path, sop_class, sop_instance, syntax, state) = row[:7]
    attempts, next_attempt_at, last_status, last_comment, outcome = row[7:]
    return QueuedItem(
        id=int(str(item_id)),
        destination=str(destination),
        item=SendItem(
            path=str(path),
            sop_class_uid=str(sop_class),
            sop_instance_uid=str(sop_instance),
            transfer_syntax_uid=str(syntax),
        ),
        state=str(state),
        attempts=int(str(attempts)),
        next_attempt_at=float(str(next_attempt_at)),
        last_status=None if last_status is None else int(str(last_status)),
        last_comment=str(last_comment),
        outcome=str(outcome),
    )


def open_outbox_db(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the outbox database at ``path``.

    Raises
    ------
    RuntimeError
        The file has a schema version this xvactor does not know.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Other processes (xvactor store --queue) write too: wait for their locks.
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version in (0, SCHEMA_VERSION):
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return conn
    except BaseException:
        conn.close()
        raise
    conn.close()
    msg = f"outbox {path} has schema version {version}, this xvactor knows {SCHEMA_VERSION}"
    raise RuntimeError(msg)


class DurableOutbox(Outbox):
    """The queue of one destination in ``<data_dir>/outbox.sqlite``.

    Parameters
    ----------
    path : Path
        The database file (created if missing).
    destination : str
        The destination's key; this outbox sees only its rows.
    """

    def __init__(self, path: Path, destination: str) -> None:
        super().__init__(destination)
        self.path = path
        self._conn = open_outbox_db(path)
        # One connection used from worker threads: one statement sequence at a time.
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection; every committed row stays."""
        with self._lock:
            self._conn.close()

    def add(self, items: Sequence[SendItem], now: float) -> list[int]:
        """Insert ``items`` in one transaction; return their ids after the commit."""
        rows = [
            (self.destination, i.path, i.sop_class_uid, i.sop_instance_uid,
             i.transfer_syntax_uid, State.QUEUED, now, now)
            for i in items
        ]  # fmt: skip
        ids: list[int] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    cursor = self._conn.execute(
                        "INSERT INTO outbox (destination, path, sop_class_uid, "
                        "sop_instance_uid, transfer_syntax_uid, state, enqueued_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    ids.append(int(cursor.lastrowid or 0))
                self._prune(now)  # new work arrives: forget what was sent long ago
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return ids

    def _select(self, where: str, params: tuple[object, ...], limit: int = -1) -> list[QueuedItem]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE destination = ? AND {where} "  # noqa: S608
                "ORDER BY id LIMIT ?",
                (self.destination, *params, limit),
            ).fetchall()
        return [_row(row) for row in rows]

    def head(self, limit: int) -> list[QueuedItem]:
        """The first ``limit`` queued items, oldest first."""
        return self._select("state = ?", (State.QUEUED,), limit)

    def items(self, state: str) -> list[QueuedItem]:
        """Every item in ``state``, oldest first."""
        return self._select("state = ?", (state,))

    def mark_sending(self, item_id: int, now: float) -> None:
        """An attempt on ``item_id`` starts (committed)."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET state = ?, updated_at = ? WHERE id = ?",
                (State.SENDING, now, item_id),
            )

    def record(
        self,
        item_id: int,
        *,
        state: str,
        attempts: int,
        next_attempt_at: float,
        status: int | None,
        comment: str,
        outcome: str,
        now: float,
    ) -> None:
        """Record the result of an attempt (committed)."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = ?, "
                "last_status = ?, last_comment = ?, outcome = ?, updated_at = ? WHERE id = ?",
                (state, attempts, next_attempt_at, status, comment, outcome, now, item_id),
            )

    def requeue(self, ids: Iterable[int] | None, now: float) -> int:
        """Put failed items back in the queue with their attempts reset."""
        update = (
            "UPDATE outbox SET state = 'queued', attempts = 0, next_attempt_at = 0, "
            "updated_at = ? WHERE destination = ? AND state = 'failed'"
        )
        with self._lock:
            if ids is None:
                return self._conn.execute(update, (now, self.destination)).rowcount
            wanted = list(ids)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = sum(
                    self._conn.execute(update + " AND id = ?", (now, self.destination, i)).rowcount
                    for i in wanted
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return changed

    def recover(self, now: float) -> int:
        """Put items left ``sending`` by a crash back in the queue.

        Sent items older than :data:`SENT_RETENTION` are deleted here and whenever new
        items are added, so the outbox of a long-running node stays the size of its
        recent traffic.
        """
        with self._lock:
            self._prune(now)
            return self._conn.execute(
                "UPDATE outbox SET state = 'queued', updated_at = ? "
                "WHERE destination = ? AND state = 'sending'",
                (now, self.destination),
            ).rowcount

    def _prune(self, now: float) -> None:
        self._conn.execute(
            "DELETE FROM outbox WHERE destination = ? AND state = 'sent' AND updated_at < ?",
            (self.destination, now - SENT_RETENTION),
        )

    def count(self, state: str) -> int:
        """How many items are in ``state``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM outbox WHERE destination = ? AND state = ?",
                (self.destination, state),
            ).fetchone()
        return int(row[0])


def pending_destinations(path: Path) -> list[str]:
    """Destinations with queued or sending items in the outbox at ``path`` (if it exists)."""
    if not path.exists():
        return []
    conn = open_outbox_db(path)
    try:
        rows = conn.execute(
            "SELECT DISTINCT destination FROM outbox WHERE state IN ('queued', 'sending')"
        ).fetchall()
    finally:
        conn.close()
    return sorted(str(row[0]) for row in rows)


class MemoryOutbox(Outbox):
    """The same queue in memory: lost with the process, for embedders who want that."""

    blocking: ClassVar[bool] = False

    def __init__(self, destination: str) -> None:
        super().__init__(destination)
        self._items: dict[int, QueuedItem] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, items: Sequence[SendItem], now: float) -> list[int]:
        """Queue ``items`` in order."""
        ids: list[int] = []
        with self._lock:
            for item in items:
                ids.append(self._next_id)
                self._items[self._next_id] = QueuedItem(
                    id=self._next_id, destination=self.destination, item=item, state=State.QUEUED
                )
                self._next_id += 1
        return ids

    def _in(self, state: str, limit: int | None = None) -> list[QueuedItem]:
        with self._lock:
            found = [q for q in self._items.values() if q.state == state]
        return found[:limit] if limit is not None else found

    def head(self, limit: int) -> list[QueuedItem]:
        """The first ``limit`` queued items, oldest first."""
        return self._in(State.QUEUED, limit)

    def items(self, state: str) -> list[QueuedItem]:
        """Every item in ``state``, oldest first."""
        return self._in(state)

    def _update(self, item_id: int, **changes: object) -> None:
        with self._lock:
            current = self._items.get(item_id)
            if current is not None:
                self._items[item_id] = msgspec.structs.replace(current, **changes)

    def mark_sending(self, item_id: int, now: float) -> None:
        """An attempt on ``item_id`` starts."""
        self._update(item_id, state=State.SENDING)

    def record(
        self,
        item_id: int,
        *,
        state: str,
        attempts: int,
        next_attempt_at: float,
        status: int | None,
        comment: str,
        outcome: str,
        now: float,
    ) -> None:
        """Record the result of an attempt.  Sent items are forgotten (no audit in memory)."""
        if state == State.SENT:
            with self._lock:
                self._items.pop(item_id, None)
            return
        self._update(
            item_id,
            state=state,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_status=status,
            last_comment=comment,
            outcome=outcome,
        )

    def requeue(self, ids: Iterable[int] | None, now: float) -> int:
        """Put failed items back in the queue with their attempts reset."""
        wanted = None if ids is None else set(ids)
        changed = 0
        for queued in self._in(State.FAILED):
            if wanted is None or queued.id in wanted:
                self._update(queued.id, state=State.QUEUED, attempts=0, next_attempt_at=0.0)
                changed += 1
        return changed

    def recover(self, now: float) -> int:
        """Put items left ``sending`` back in the queue (after an actor restart)."""
        stuck = self._in(State.SENDING)
        for queued in stuck:
            self._update(queued.id, state=State.QUEUED)
        return len(stuck)

    def count(self, state: str) -> int:
        """How many items are in ``state``."""
        return len(self._in(state))
