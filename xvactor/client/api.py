"""The embedding API: an async client for echo, store, find, move and get.

>>> async with Client(ae_title="MODALITY") as client:  # doctest: +SKIP
...     await client.echo(("pacs.example", 104, "PACS"))
...     async for study in client.find("pacs", {"PatientID": "123", "StudyDate": ""}):
...         print(study.StudyDate)

Every association runs on a worker thread (:func:`xvactor.runtime.run_blocking`, limiter
``"associate"``); the event loop never blocks on the network.  A ``find`` streams its
matches through a bounded buffer as the pending responses arrive, so a slow consumer slows
the peer down; leaving the iteration early sends a C-CANCEL (PS3.7 Section 9.3.2.3).  A
cancelled ``move``/``get`` also sends a C-CANCEL and returns once the peer has answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import msgspec
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydicom.dataset import Dataset

from xvactor.actors.sender import SenderInbox
from xvactor.actors.senders import Senders, sender_limiters
from xvactor.client.destinations import DestinationLike, peer_for, resolve
from xvactor.client.errors import ClientError, NoAssociation, ServiceFailed
from xvactor.client.query import FindResponses, Model, identifier_for
from xvactor.client.results import GetResult, MoveResult, StoreResult
from xvactor.client.sinks import InstanceCallback, InstanceSink
from xvactor.client.store import StoreInput, StoreProgressHandler, send_batch
from xvactor.config import Destination, NodeConfig, QueueKind
from xvactor.dicom.qr_scu import (
    Operation,
    QueryModel,
    QueryOutcome,
    RetrieveOutcome,
    StorageSCP,
    echo,
)
from xvactor.dicom.scu import AssociationFailed, Peer
from xvactor.dicom.status import Status
from xvactor.runtime import ActorRef, Limiters, LoopBridge, run_blocking

__all__ = ["Client", "FindResponses", "Model", "identifier_for"]


class Client:
    """An async DICOM client: ``async with Client(...) as client``.

    Parameters
    ----------
    ae_title : str, optional
        Our AE title (calling AE, and move destination of :meth:`move`); default the
        configuration's ``ae_title``.
    config : NodeConfig, optional
        Named destinations, timeouts, largest PDU, sender settings; default the built-in
        defaults.
    find_buffer : int, optional
        Matches a C-FIND may hold ahead of the consumer before the peer is slowed down.
    max_associations : int, optional
        Associations this client opens at once (a limiter over worker threads).
    """

    def __init__(
        self,
        ae_title: str | None = None,
        config: NodeConfig | None = None,
        *,
        find_buffer: int = 64,
        max_associations: int = 8,
    ) -> None:
        self.config = config if config is not None else NodeConfig()
        self.ae_title = ae_title or self.config.ae_title
        self.find_buffer = find_buffer
        self._limiters = Limiters({"associate": max_associations})
        self._task_group: TaskGroup | None = None
        self._bridge: LoopBridge | None = None
        # Running operations, with the stream a C-FIND's matches wait in (None otherwise).
        self._operations: dict[Operation, MemoryObjectReceiveStream[Dataset] | None] = {}
        self._senders: Senders | None = None
        self._senders_lock: anyio.Lock | None = None

    async def __aenter__(self) -> Self:
        self._bridge = LoopBridge()
        self._senders_lock = anyio.Lock()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        for operation, receive in list(self._operations.items()):
            if receive is not None:
                receive.close()  # a worker blocked on a full buffer gets out and cancels
            operation.cancel()
        senders, self._senders = self._senders, None
        if senders is not None:
            with anyio.CancelScope(shield=True):
                await senders.supervisor.stop()
        if task_group is not None:
            # The workers hand their errors to their callers and never raise here; the
            # body's own exception is not passed in, so it propagates as it is instead of
            # wrapped in an ExceptionGroup.
            await task_group.__aexit__(None, None, None)

    def destination(self, dest: DestinationLike) -> Destination:
        """Resolve ``dest`` (a Destination, a configured name, or ``(host, port, ae)``)."""
        return resolve(dest, self.config)

    async def echo(self, dest: DestinationLike) -> int:
        """C-ECHO ``dest`` (PS3.7 Section 9.1.5) and return the status (0 is success).

        Raises
        ------
        NoAssociation
            No association, or no response.
        """
        peer = peer_for(self.destination(dest), self.config, self.ae_title)
        try:
            return await run_blocking(self._limiters, "associate", echo, peer)
        except AssociationFailed as exc:
            raise NoAssociation(str(exc)) from None

    async def store(
        self,
        dest: DestinationLike,
        items: Sequence[StoreInput],
        *,
        on_progress: StoreProgressHandler | None = None,
    ) -> list[StoreResult]:
        """C-STORE paths and/or datasets to ``dest``, in order, over one association.

        The instances go through a sender actor of this client (the code a node forwards
        with, PS3.4 Annex B): one association per destination, reused by later calls until
        idle for ``[sender] idle_release`` seconds.  Nothing is retried here: a transport
        failure ends the batch (``outcome`` ``"retry"``, status 0xA700).

        Parameters
        ----------
        dest : DestinationLike
            The Storage SCP.
        items : sequence of path or Dataset
            Part 10 files, or datasets (written to a temporary file first).
        on_progress : coroutine function, optional
            Awaited with a :class:`~xvactor.client.StoreProgress` after each instance.

        Returns
        -------
        list of StoreResult
            One per input, in input order; ``result.ok`` for success or warning.
        """
        ref = await self._sender(dest)
        return await send_batch(ref, items, on_progress=on_progress)

    async def _sender(self, dest: DestinationLike) -> ActorRef[SenderInbox]:
        destination = self.destination(dest)
        if self._task_group is None or self._senders_lock is None:
            raise RuntimeError("use the client inside 'async with Client(...)'")
        async with self._senders_lock:
            if self._senders is None:
                config = msgspec.structs.replace(
                    self.config,
                    ae_title=self.ae_title,
                    sender=msgspec.structs.replace(self.config.sender, queue=QueueKind.MEMORY),
                )
                senders = Senders(config, Limiters(sender_limiters(config)), doorbell=False)
                await self._task_group.start(senders.supervisor.run)
                self._senders = senders
            senders = self._senders
        if destination in self.config.destinations:
            return senders.by_name(destination.name)
        if destination.tls is not None or destination.local_ae_title is not None:
            raise ClientError(
                f"store to {destination.name!r}: a destination with TLS or a local AE "
                "title must be in the client's configuration"
            )
        return await senders.ad_hoc(destination.host, destination.port, destination.ae_title)

    def find(
        self,
        dest: DestinationLike,
        keys: Dataset | Mapping[str, str],
        *,
        model: Model = "study",
        level: str | None = None,
    ) -> FindResponses:
        """C-FIND at ``dest``: an async iterator of the matching Identifiers.

        Parameters
        ----------
        dest : DestinationLike
            The Q/R or worklist SCP.
        keys : Dataset or mapping of str to str
            Matching and return keys (see :mod:`xvactor.client.keys`).
        model : {"study", "patient", "patient-study", "worklist"}
            The information model (PS3.4 C.6, K.6).
        level : str, optional
            PATIENT, STUDY, SERIES or IMAGE (not for the worklist).
        """
        if self._task_group is None:
            raise RuntimeError("use the client inside 'async with Client(...)'")
        query_model, identifier = identifier_for(keys, model, level, find=True)
        peer = peer_for(self.destination(dest), self.config, self.ae_title)
        box: list[QueryOutcome] = []
        return FindResponses(self._find_stream(peer, query_model, identifier, box), box)

    async def _find_stream(
        self, peer: Peer, model: QueryModel, identifier: Dataset, box: list[QueryOutcome]
    ) -> AsyncIterator[Dataset]:
        # Runs from the first __anext__: nothing is associated for an iterator never used.
        if self._task_group is None:
            raise RuntimeError("the client is closed")
        send, receive = anyio.create_memory_object_stream[Dataset](self.find_buffer)
        errors: list[BaseException] = []
        done = anyio.Event()
        operation = Operation(peer, "find", model, identifier, on_match=_forward(send))
        self._operations[operation] = receive
        self._task_group.start_soon(self._run_find, operation, send, box, errors, done)
        try:
            async with receive:
                async for match in receive:
                    yield match
        finally:
            receive.close()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(operation.cancel)
                await done.wait()
        if errors:
            raise errors[0]
        outcome = box[0]
        if not outcome.ok:
            raise ServiceFailed(
                _failure("C-FIND", outcome.status, outcome.error_comment),
                status=outcome.status,
                error_comment=outcome.error_comment,
            )

    async def _run_find(
        self,
        operation: Operation,
        send: MemoryObjectSendStream[Dataset],
        box: list[QueryOutcome],
        errors: list[BaseException],
        done: anyio.Event,
    ) -> None:
        try:
            outcome = await run_blocking(self._limiters, "associate", operation.run)
            assert isinstance(outcome, QueryOutcome)
            box.append(outcome)
        except AssociationFailed as exc:
            errors.append(NoAssociation(str(exc)))
        except Exception as exc:  # handed to the consumer, never lost in the task group
            errors.append(exc)
        finally:
            self._operations.pop(operation, None)
            send.close()
            done.set()

    async def move(
        self,
        dest: DestinationLike,
        keys: Dataset | Mapping[str, str],
        *,
        model: Model = "study",
        level: str | None = None,
        out_dir: str | Path | None = None,
        on_instance: InstanceCallback | None = None,
        port: int | None = None,
        bind: str = "0.0.0.0",  # noqa: S104 - the peer connects from elsewhere by default
        move_destination: str | None = None,
    ) -> MoveResult:
        """C-MOVE from ``dest`` to our own Storage SCP (or to a third AE).

        Our Storage SCP listens on ``bind``:``port`` (default: the destination's
        ``local_port``) with our AE title (the destination's ``local_ae_title`` or the
        client's), which is the Move Destination the peer must know (PS3.4 C.4.2.1.4).
        Each received instance is written to ``out_dir`` as ``<SOP Instance UID>.dcm``
        and/or awaited as ``on_instance(dataset)``.  With ``move_destination`` set to
        another AE, nothing is started here and the peer sends there.

        Returns
        -------
        MoveResult
            The final status, sub-operation counts and what we received.

        Raises
        ------
        NoAssociation
            No association with ``dest`` (or it was lost before the final response).
        OSError
            Our Storage SCP cannot listen on the port.
        """
        query_model, identifier = identifier_for(keys, model, level)
        destination = self.destination(dest)
        peer = peer_for(destination, self.config, self.ae_title)
        target = move_destination or peer.calling_ae_title
        operation = Operation(peer, "move", query_model, identifier, move_destination=target)
        if target != peer.calling_ae_title:
            return MoveResult.from_outcome(await self._retrieve(operation), ())
        sink = self._sink(out_dir, on_instance)
        scp = StorageSCP(
            target,
            bind,
            destination.local_port if port is None else port,
            sink,
            acse_timeout=self.config.timeouts.acse,
            dimse_timeout=self.config.timeouts.dimse,
            max_pdu=self.config.max_pdu,
        )
        await run_blocking(self._limiters, "associate", sink.prepare)
        await run_blocking(self._limiters, "associate", scp.start)
        try:
            outcome = await self._retrieve(operation)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(scp.stop)
        return MoveResult.from_outcome(outcome, sink.received)

    async def get(
        self,
        dest: DestinationLike,
        keys: Dataset | Mapping[str, str],
        *,
        model: Model = "study",
        level: str | None = None,
        out_dir: str | Path | None = None,
        on_instance: InstanceCallback | None = None,
        sop_classes: list[str] | None = None,
    ) -> GetResult:
        """C-GET from ``dest``: the instances come back on the same association.

        The storage SOP classes are proposed with the SCP role (SCP/SCU Role Selection,
        PS3.7 Annex D.3.3.4): ``sop_classes``, or pynetdicom's 120 most common ones.
        Received instances go to ``out_dir`` and/or ``on_instance`` as with :meth:`move`.

        Raises
        ------
        NoAssociation
            No association with ``dest`` (or it was lost before the final response).
        """
        query_model, identifier = identifier_for(keys, model, level)
        peer = peer_for(self.destination(dest), self.config, self.ae_title)
        sink = self._sink(out_dir, on_instance)
        await run_blocking(self._limiters, "associate", sink.prepare)
        operation = Operation(
            peer,
            "get",
            query_model,
            identifier,
            on_instance=sink,
            storage_sop_classes=sop_classes,
        )
        return GetResult.from_outcome(await self._retrieve(operation), sink.received)

    def _sink(
        self, out_dir: str | Path | None, on_instance: InstanceCallback | None
    ) -> InstanceSink:
        directory = Path(out_dir) if out_dir is not None else None
        return InstanceSink(directory, on_instance, self._bridge)

    async def _retrieve(self, operation: Operation) -> RetrieveOutcome:
        """Run a C-MOVE/C-GET; if this task is cancelled, C-CANCEL it and wait for the end."""
        finished = False

        async def cancel_when_cancelled() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                if not finished:
                    operation.cancel()

        failure: Exception | None = None
        outcome: object = None
        self._operations[operation] = None
        try:
            async with anyio.create_task_group() as watch:
                watch.start_soon(cancel_when_cancelled)
                try:
                    outcome = await run_blocking(self._limiters, "associate", operation.run)
                except Exception as exc:  # raised below, not wrapped in an ExceptionGroup
                    failure = exc
                finally:
                    finished = True
                    watch.cancel_scope.cancel()
        finally:
            self._operations.pop(operation, None)
        # Cancelled while the thread finished the exchange: the caller's cancellation wins.
        await anyio.lowlevel.checkpoint_if_cancelled()
        if isinstance(failure, AssociationFailed):
            raise NoAssociation(str(failure)) from None
        if failure is not None:
            raise failure
        assert isinstance(outcome, RetrieveOutcome)
        return outcome


def _forward(send: MemoryObjectSendStream[Dataset]) -> Callable[[Dataset], bool]:
    """The C-FIND match handler of a worker thread: into the stream, or cancel."""

    def on_match(identifier: Dataset) -> bool:
        try:
            anyio.from_thread.run(send.send, identifier)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False  # the consumer has gone: C-CANCEL
        return True

    return on_match


def _failure(service: str, status: int, comment: str) -> str:
    try:
        name = Status(status).name.replace("_", " ").lower()
    except ValueError:
        name = "failure"
    text = f"{service} failed with status 0x{status:04X} ({name})"
    return f"{text}: {comment}" if comment else text
