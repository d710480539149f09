"""The query resolver actor: answers C-FIND (Q/R and worklist) and selects C-MOVE/C-GET sets.

Every query runs on a worker thread (limiter ``query``) over its own read-only SQLite
connection; WAL lets it read beside the catalog's writer.  Matches stream back through
the bounded stream the request carries: the first goes out as soon as it is found, then
in small batches (at most ``BATCH`` matches or ``BATCH_AGE`` seconds old), so pending
responses leave while the catalog is still being read, and a full stream (a slow peer)
holds the query back instead of growing memory.  Closing the receiving end (C-CANCEL)
stops the query before its next match.

Identifiers travel as bytes encoded in the presentation context's transfer syntax, both
ways: the association thread neither decodes nor encodes them.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Generator, Iterator
from io import BytesIO
from pathlib import Path
from typing import ClassVar, assert_never, cast

import anyio
import anyio.from_thread
from anyio.streams.memory import MemoryObjectSendStream
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode, encode

from xvactor.actors.catalog import CATALOG_FILE
from xvactor.catalog.sqlite import open_catalog
from xvactor.config import Query as QueryOptions
from xvactor.dicom.contexts import MODALITY_WORKLIST_FIND
from xvactor.dicom.flat_encode import encode_flat
from xvactor.dicom.status import DicomServiceError, IdentifierDoesNotMatch, status_for
from xvactor.query.model import Model, model_for
from xvactor.runtime import Actor, Limiters, Message, run_blocking
from xvactor.sender.queue import SendItem
from xvactor.storage.pending import materialize_paths

__all__ = [
    "BATCH",
    "BATCH_AGE",
    "FindBatch",
    "QueryFailed",
    "ResolveFind",
    "ResolveRetrieve",
    "ResolverActor",
    "ResolverInbox",
    "RetrieveMatches",
]

LOGGER = logging.getLogger("xvactor.resolver")

BATCH = 64
BATCH_AGE = 0.05


class FindBatch(Message, frozen=True, tag=True, kw_only=True):
    """Matches, in order, each an encoded response Identifier."""

    identifiers: tuple[bytes, ...]


class QueryFailed(Message, frozen=True, tag=True, kw_only=True):
    """The query ended in failure after the batches before it (the last item sent)."""

    status: int
    error_comment: str = ""


class ResolveFind(Message, frozen=True, tag=True, kw_only=True):
    """Command: stream the matches of a C-FIND into ``results``, then close it."""

    sop_class_uid: str
    transfer_syntax_uid: str
    identifier: bytes
    results: object
    """A ``MemoryObjectSendStream[FindBatch | QueryFailed]`` owned by this command."""
    combined_datetime: bool = False
    """Combined date-time matching was agreed in Extended Negotiation (PS3.4 C.2.2.2.5.1)."""


class ResolveRetrieve(Message, frozen=True, tag=True, kw_only=True):
    """Query: the instances a C-MOVE or C-GET Identifier selects."""

    sop_class_uid: str
    transfer_syntax_uid: str
    identifier: bytes


class RetrieveMatches(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``ResolveRetrieve``."""

    items: tuple[SendItem, ...]


ResolverInbox = ResolveFind | ResolveRetrieve


def _decode(identifier: bytes, transfer_syntax_uid: str) -> Dataset:
    syntax = UID(transfer_syntax_uid)
    try:
        return decode(BytesIO(identifier), syntax.is_implicit_VR, syntax.is_little_endian)
    except Exception as exc:
        raise IdentifierDoesNotMatch(f"Cannot decode the Identifier: {exc}") from exc


def _encode(ds: Dataset, transfer_syntax_uid: str) -> bytes:
    syntax = UID(transfer_syntax_uid)
    if syntax.is_little_endian and not syntax.is_deflated:
        flat = encode_flat(ds, implicit_vr=syntax.is_implicit_VR)
        if flat is not None:
            return flat
    return cast(bytes, encode(ds, syntax.is_implicit_VR, syntax.is_little_endian))


def _model(sop_class_uid: str) -> Model:
    model = model_for(sop_class_uid)
    if model is None:
        raise IdentifierDoesNotMatch(f"{sop_class_uid} is not a Q/R SOP Class")
    return model


class ResolverActor(Actor[ResolverInbox]):
    """Resolves queries against the catalog; several run at once, each on its thread."""

    concurrency: ClassVar[int] = 16

    def __init__(self, data_dir: Path, options: QueryOptions, limiters: Limiters) -> None:
        self._database = data_dir / CATALOG_FILE
        self._data_dir = data_dir
        self._options = options
        self._limiters = limiters

    async def started(self) -> None:
        """Make sure the worklist tables exist (queries use read-only connections)."""
        await run_blocking(self._limiters, "query", self._create_worklist_schema)

    def _create_worklist_schema(self) -> None:
        from xvactor.worklist.store import create_worklist_schema  # noqa: PLC0415

        conn = sqlite3.connect(self._database, timeout=30.0)
        try:
            with conn:
                create_worklist_schema(conn)
        finally:
            conn.close()

    async def receive(self, message: ResolverInbox) -> object:
        """Dispatch one message."""
        match message:
            case ResolveFind():
                await self._find(message)
                return None
            case ResolveRetrieve():
                items = await run_blocking(self._limiters, "query", self._retrieve, message)
                return RetrieveMatches(items=items)
            case _:
                assert_never(message)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._database, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA query_only = 1")
        return conn

    async def _find(self, message: ResolveFind) -> None:
        results = cast(MemoryObjectSendStream[FindBatch | QueryFailed], message.results)
        async with results:
            try:
                await run_blocking(self._limiters, "query", self._stream, message, results)
            except anyio.BrokenResourceError:
                LOGGER.debug("C-FIND cancelled by the requester")
            except Exception as exc:
                reply = status_for(exc)
                if not isinstance(exc, DicomServiceError):
                    LOGGER.warning("C-FIND failed", exc_info=True)
                failure = QueryFailed(status=reply.status, error_comment=reply.error_comment or "")
                with contextlib.suppress(anyio.BrokenResourceError):
                    await results.send(failure)

    def _matches(self, conn: sqlite3.Connection, message: ResolveFind) -> Iterator[Dataset]:
        keys = _decode(message.identifier, message.transfer_syntax_uid)
        if message.sop_class_uid == MODALITY_WORKLIST_FIND:
            from xvactor.worklist.query import find_worklist  # noqa: PLC0415

            return find_worklist(
                conn,
                keys,
                limit=self._options.max_results,
                case_insensitive_names=self._options.case_insensitive_names,
            )
        from xvactor.query.model import parse_identifier  # noqa: PLC0415
        from xvactor.query.resolver import resolve  # noqa: PLC0415

        query = parse_identifier(
            keys, _model(message.sop_class_uid), combined_datetime=message.combined_datetime
        )
        return resolve(
            conn,
            query,
            limit=self._options.max_results,
            case_insensitive_names=self._options.case_insensitive_names,
        )

    def _stream(
        self, message: ResolveFind, results: MemoryObjectSendStream[FindBatch | QueryFailed]
    ) -> None:
        """On a worker thread: run the query and hand its matches to the loop in batches."""
        conn = self._connect()
        matches = self._matches(conn, message)
        batch: list[bytes] = []

        def flush() -> None:
            nonlocal batch
            if batch:
                anyio.from_thread.run(results.send, FindBatch(identifiers=tuple(batch)))
                batch = []

        try:
            oldest = 0.0
            first = True
            for ds in matches:
                batch.append(_encode(ds, message.transfer_syntax_uid))
                if len(batch) == 1:
                    oldest = time.monotonic()
                if first or len(batch) >= BATCH or time.monotonic() - oldest >= BATCH_AGE:
                    flush()
                    first = False
            flush()
        except DicomServiceError:
            flush()  # the matches before a failure (a result limit) still go out first
            raise
        finally:
            if isinstance(matches, Generator):
                matches.close()
            conn.close()

    def _retrieve(self, message: ResolveRetrieve) -> tuple[SendItem, ...]:
        from xvactor.query.model import parse_identifier  # noqa: PLC0415
        from xvactor.query.resolver import resolve_instances  # noqa: PLC0415

        keys = _decode(message.identifier, message.transfer_syntax_uid)
        query = parse_identifier(keys, _model(message.sop_class_uid), retrieve=True)
        conn = self._connect()
        try:
            locations = list(resolve_instances(conn, query))
            pending = conn.execute("SELECT 1 FROM pending_files LIMIT 1").fetchone()
        finally:
            conn.close()
        if pending is not None:  # small instances may not be at their names yet
            self._materialize([location.path for location in locations])
        return tuple(
            SendItem(
                path=str(self._data_dir / location.path),
                sop_class_uid=location.sop_class_uid,
                sop_instance_uid=location.sop_instance_uid,
                transfer_syntax_uid=location.transfer_syntax_uid,
            )
            for location in locations
        )

    def _materialize(self, paths: list[str]) -> None:
        """Write at their names those of ``paths`` the catalog still holds."""
        conn = open_catalog(self._database)
        try:
            materialize_paths(conn, self._data_dir, paths)
        finally:
            conn.close()
