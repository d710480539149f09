"""The catalog actor: runs the catalog's writer thread and answers asks about the catalog.

The catalog connection lives on the writer thread (``xvactor.catalog.writer``), which
commits index requests in groups.  The actor starts it before the node takes traffic and
stops it (after everything queued is committed) when the node stops.  Instances are filed
through the writer directly (``xvactor.storage.filing``); lookups are asked here, and each
ask waits on a worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, assert_never

from xvactor.catalog.sqlite import StoredInstance, count_instances, find_instance
from xvactor.catalog.writer import CatalogWriter
from xvactor.runtime import Actor, ActorRef, Limiters, Message, run_blocking

__all__ = [
    "CATALOG_FILE",
    "CatalogActor",
    "CatalogInbox",
    "CountInstances",
    "FindInstance",
    "InstanceCount",
    "InstanceFound",
    "catalog_writer",
    "count",
    "find",
]

CATALOG_FILE = "catalog.sqlite"


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


CatalogInbox = FindInstance | CountInstances


def catalog_writer(data_dir: Path, *, capacity: int, overwrites: bool = True) -> CatalogWriter:
    """The writer for the catalog under ``data_dir``, filing instances there (not started).

    ``overwrites``: the node's duplicate policy may replace catalogued instances.
    """
    return CatalogWriter(
        data_dir / CATALOG_FILE, capacity=capacity, files=data_dir, overwrites=overwrites
    )


class CatalogActor(Actor[CatalogInbox]):
    """Starts and stops the catalog writer; serves asks through it."""

    concurrency: ClassVar[int] = 16
    """Asks processed at once (each waits on a worker thread of the ``catalog`` limiter)."""

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
