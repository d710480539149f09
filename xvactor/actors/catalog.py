"""The catalog actor: runs the catalog's writer thread and answers asks about the catalog.

The catalog connection lives on the writer thread (``xvactor.catalog.writer``), which
commits index requests in groups.  The actor starts it before the node takes traffic and
stops it (after everything queued is committed) when the node stops.  Receiving threads
index through the writer directly; actors ask here, and the ask waits on a worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, assert_never

from xvactor.catalog.sqlite import StoredInstance, count_instances, find_instance
from xvactor.catalog.writer import CatalogWriter
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
    "catalog_writer",
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


def catalog_writer(data_dir: Path, *, capacity: int) -> CatalogWriter:
    """The writer for the catalog under ``data_dir``, filing instances there (not started)."""
    return CatalogWriter(data_dir / CATALOG_FILE, capacity=capacity, files=data_dir)


class CatalogActor(Actor[CatalogInbox]):
    """Starts and stops the catalog writer; serves asks through it."""

    concurrency: ClassVar[int] = 256
    """Asks processed at once: every in-flight index request can join the open group."""

    def __init__(self, writer: CatalogWriter, limiters: Limiters, *, timeout: float) -> None:
        self._writer = writer
        self._limiters = limiters
        self._timeout = timeout

    async def started(self) -> None:
        """Open (and if needed create) the database before the node takes traffic."""
        await run_blocking(self._limiters, "catalog", self._writer.start)

    async def stopping(self) -> None:
        """Commit what is queued and close the database."""
        await run_blocking(self._limiters, "catalog", self._writer.stop)

    async def receive(self, message: CatalogInbox) -> object:
        """Dispatch one message."""
        writer, timeout = self._writer, self._timeout
        match message:
            case IndexInstance(record=record, replace=replace):
                outcome = await run_blocking(
                    self._limiters,
                    "catalog",
                    lambda: writer.index(record, replace=replace, timeout=timeout),
                )
                return InstanceIndexed(
                    existed=outcome.existed,
                    previous_path=outcome.previous_path,
                    written=outcome.written,
                )
            case FindInstance(sop_instance_uid=uid):
                stored = await run_blocking(
                    self._limiters,
                    "catalog",
                    lambda: writer.call(lambda conn: find_instance(conn, uid), timeout=timeout),
                )
                return _found(uid, stored)
            case CountInstances():
                total = await run_blocking(
                    self._limiters,
                    "catalog",
                    lambda: writer.call(count_instances, timeout=timeout),
                )
                return InstanceCount(count=total)
            case _:
                assert_never(message)


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
