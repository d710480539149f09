"""The catalog actor: owns the SQLite catalog and commits index rows in groups.

Group commit: concurrent ``IndexInstance`` asks (one per C-STORE in flight, from any number
of associations) join the open batch; whichever of them takes the commit lock first writes
the whole batch in one transaction, and every member is answered from that one commit.
While a commit runs, new arrivals gather in the next batch.  A member's reply therefore
always waits for the commit that holds its row, and concurrent C-STOREs share one fsync.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, assert_never

import anyio

from xvactor.catalog.sqlite import (
    IndexOutcome,
    StoredInstance,
    count_instances,
    find_instance,
    open_catalog,
    write_batch,
)
from xvactor.dicom.records import InstanceRecord
from xvactor.runtime import Actor, ActorRef, Limiters, Message, run_blocking

__all__ = [
    "CATALOG_FILE",
    "CatalogActor",
    "CatalogInbox",
    "CountInstances",
    "FindInstance",
    "IndexInstance",
    "InstanceCount",
    "InstanceFound",
    "InstanceIndexed",
    "count",
    "find",
    "index",
]

CATALOG_FILE = "catalog.sqlite"


class IndexInstance(Message, frozen=True, tag=True, kw_only=True):
    """Command: index a durable instance file; answered after the commit that holds it."""

    record: InstanceRecord
    replace: bool
    """Replace an existing row with the same SOP Instance UID (``overwrite`` policy)."""


class InstanceIndexed(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``IndexInstance``."""

    existed: bool
    previous_path: str | None
    written: bool


class FindInstance(Message, frozen=True, tag=True, kw_only=True):
    """Query: where is this SOP Instance stored?"""

    sop_instance_uid: str


class InstanceFound(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``FindInstance`` (``path`` empty when not catalogued)."""

    sop_instance_uid: str
    sop_class_uid: str = ""
    transfer_syntax_uid: str = ""
    path: str = ""
    size: int = 0
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""

    @property
    def found(self) -> bool:
        """Whether the instance is catalogued."""
        return bool(self.path)


class CountInstances(Message, frozen=True, tag=True, kw_only=True):
    """Query: how many instances are catalogued?"""


class InstanceCount(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``CountInstances``."""

    count: int


CatalogInbox = IndexInstance | FindInstance | CountInstances


@dataclass
class _Batch:
    items: list[tuple[InstanceRecord, bool]] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    outcomes: list[IndexOutcome | Exception] = field(default_factory=list)
    error: Exception | None = None


class CatalogActor(Actor[CatalogInbox]):
    """Owns the catalog database; one thread touches it at a time (limiter ``catalog``)."""

    concurrency: ClassVar[int] = 256
    """Asks processed at once: every in-flight C-STORE can join the open batch."""

    def __init__(self, data_dir: Path, limiters: Limiters) -> None:
        self._path = data_dir / CATALOG_FILE
        self._limiters = limiters
        self._conn: sqlite3.Connection | None = None
        self._open: _Batch | None = None
        self._commit_lock = anyio.Lock()

    async def started(self) -> None:
        """Open (and if needed create) the database before the node takes traffic."""
        self._conn = await run_blocking(self._limiters, "catalog", open_catalog, self._path)

    async def stopping(self) -> None:
        """Close the database; every commit already answered is durable."""
        if self._conn is not None:
            async with self._commit_lock:
                await run_blocking(self._limiters, "catalog", self._conn.close)
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("catalog is not open")
        return self._conn

    async def receive(self, message: CatalogInbox) -> object:
        """Dispatch one message."""
        match message:
            case IndexInstance():
                return await self._index(message)
            case FindInstance(sop_instance_uid=uid):
                async with self._commit_lock:
                    stored = await run_blocking(
                        self._limiters, "catalog", find_instance, self._db(), uid
                    )
                return _found(uid, stored)
            case CountInstances():
                async with self._commit_lock:
                    total = await run_blocking(
                        self._limiters, "catalog", count_instances, self._db()
                    )
                return InstanceCount(count=total)
            case _:
                assert_never(message)

    async def _index(self, message: IndexInstance) -> InstanceIndexed:
        if self._open is None:
            self._open = _Batch()
        batch = self._open
        position = len(batch.items)
        batch.items.append((message.record, message.replace))
        async with self._commit_lock:
            if not batch.done.is_set():
                # First member to get the lock commits everyone who joined so far.
                if self._open is batch:
                    self._open = None
                try:
                    batch.outcomes = await run_blocking(
                        self._limiters, "catalog", write_batch, self._db(), batch.items
                    )
                except Exception as exc:
                    batch.error = exc
                finally:
                    batch.done.set()
        if batch.error is not None:
            raise batch.error
        outcome = batch.outcomes[position]
        if isinstance(outcome, Exception):
            raise outcome
        return InstanceIndexed(
            existed=outcome.existed, previous_path=outcome.previous_path, written=outcome.written
        )


def _found(uid: str, stored: StoredInstance | None) -> InstanceFound:
    if stored is None:
        return InstanceFound(sop_instance_uid=uid)
    return InstanceFound(
        sop_instance_uid=stored.sop_instance_uid,
        sop_class_uid=stored.sop_class_uid,
        transfer_syntax_uid=stored.transfer_syntax_uid,
        path=stored.path,
        size=stored.size,
        study_instance_uid=stored.study_instance_uid,
        series_instance_uid=stored.series_instance_uid,
        patient_id=stored.patient_id,
        patient_name=stored.patient_name,
    )


# Client functions: nobody builds another actor's messages by hand.


async def index(
    ref: ActorRef[CatalogInbox], record: InstanceRecord, *, replace: bool, timeout: float
) -> InstanceIndexed:
    """Index ``record``; returns after the commit that holds it."""
    return await ref.ask(
        IndexInstance(record=record, replace=replace), expect=InstanceIndexed, timeout=timeout
    )


async def find(
    ref: ActorRef[CatalogInbox], sop_instance_uid: str, *, timeout: float
) -> InstanceFound:
    """Where is ``sop_instance_uid`` stored?"""
    return await ref.ask(
        FindInstance(sop_instance_uid=sop_instance_uid), expect=InstanceFound, timeout=timeout
    )


async def count(ref: ActorRef[CatalogInbox], *, timeout: float) -> int:
    """How many instances are catalogued."""
    reply = await ref.ask(CountInstances(), expect=InstanceCount, timeout=timeout)
    return reply.count
