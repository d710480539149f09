"""The node's :class:`~xvactor.dicom.qr_scp.QueryServices`: the resolver and the senders,
reached from an association's thread through the loop bridge.

Streams cross the bridge one batch at a time: the association thread blocks on the
receiving end of a bounded memory stream whose sending end an actor owns.  Closing it
from the association thread (C-CANCEL, or the peer went away) makes the actor's next send
fail, which stops the query or the C-MOVE sub-operations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from xvactor.actors.resolver import (
    FindBatch,
    QueryFailed,
    ResolveFind,
    ResolveRetrieve,
    ResolverInbox,
    RetrieveMatches,
)
from xvactor.actors.sender import SenderInbox, SendItem, SendResult, send_now
from xvactor.dicom.qr_scp import Prepared, ResultStream, SubOperationResult
from xvactor.dicom.status import DicomServiceError, Status
from xvactor.runtime import ActorDead, ActorRef, LoopBridge

__all__ = ["BridgedQueryServices", "BridgedStream", "MoveRouter"]

T = TypeVar("T")
U = TypeVar("U")

_STREAM_BUFFER = 4
"""Batches in flight per stream: enough to overlap reading and sending, and bounded."""


class BridgedStream(Generic[T, U]):
    """The receiving end of an actor's stream, iterated from a foreign thread.

    ``unpack`` turns each received message into the items it carries, or raises.
    """

    def __init__(
        self,
        bridge: LoopBridge,
        receive: MemoryObjectReceiveStream[U],
        unpack: Callable[[U], Sequence[T]],
    ) -> None:
        self._bridge = bridge
        self._receive = receive
        self._unpack = unpack
        self._closed = False

    def __iter__(self) -> Iterator[T]:
        while not self._closed:
            try:
                message = self._bridge.call(self._receive.receive)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
            yield from self._unpack(message)

    def close(self) -> None:
        """Close the receiving end (idempotent; a stopped loop has closed it already)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(ActorDead):
                self._bridge.call(self._receive.aclose)


def _find_items(message: FindBatch | QueryFailed) -> Sequence[bytes]:
    if isinstance(message, QueryFailed):
        raise DicomServiceError(message.error_comment, status=Status(message.status))
    return message.identifiers


def _sub_operation(result: SendResult) -> Sequence[SubOperationResult]:
    return [SubOperationResult(result.sop_instance_uid, result.status, result.error_comment)]


class MoveRouter(Protocol):
    """Finds the C-MOVE destination's sender."""

    def destination(self, ae_title: str) -> object:
        """The destination with this AE title; raises ``MoveDestinationUnknown``."""
        ...

    def sender(self, ae_title: str) -> ActorRef[SenderInbox]:
        """Its sender actor; raises ``MoveDestinationUnknown``."""
        ...


class BridgedQueryServices:
    """Query services backed by the node's actors."""

    def __init__(
        self,
        bridge: LoopBridge,
        resolver: ActorRef[ResolverInbox],
        router: MoveRouter,
        prepare: Callable[[SendItem, Sequence[str]], Prepared],
        *,
        timeout: float,
    ) -> None:
        self._bridge = bridge
        self._resolver = resolver
        self._router = router
        self._prepare = prepare
        self._timeout = timeout

    def find(
        self,
        sop_class_uid: str,
        transfer_syntax_uid: str,
        identifier: bytes,
        *,
        combined_datetime: bool = False,
    ) -> ResultStream[bytes]:
        """Start the query on the resolver; its matches stream back."""

        async def tell(results: MemoryObjectSendStream[FindBatch | QueryFailed]) -> None:
            await self._resolver.tell(
                ResolveFind(
                    sop_class_uid=sop_class_uid,
                    transfer_syntax_uid=transfer_syntax_uid,
                    identifier=identifier,
                    combined_datetime=combined_datetime,
                    results=results,
                )
            )

        return self._stream(tell, _find_items)

    def retrieve(
        self, sop_class_uid: str, transfer_syntax_uid: str, identifier: bytes
    ) -> Sequence[SendItem]:
        """Ask the resolver which instances the Identifier selects."""
        reply = self._bridge.ask(
            self._resolver,
            ResolveRetrieve(
                sop_class_uid=sop_class_uid,
                transfer_syntax_uid=transfer_syntax_uid,
                identifier=identifier,
            ),
            expect=RetrieveMatches,
            timeout=self._timeout,
        )
        return reply.items

    def check_move_destination(self, move_destination: str) -> None:
        """Raise ``MoveDestinationUnknown`` unless it is a configured destination."""
        self._router.destination(move_destination)

    def move(
        self,
        move_destination: str,
        items: Sequence[SendItem],
        *,
        originator_ae_title: str,
        originator_message_id: int,
    ) -> ResultStream[SubOperationResult]:
        """Hand the sub-operations to the destination's sender; results stream back."""
        sender = self._router.sender(move_destination)

        async def tell(results: MemoryObjectSendStream[SendResult]) -> None:
            await send_now(
                sender,
                items,
                results,
                move_originator_ae_title=originator_ae_title,
                move_originator_message_id=originator_message_id,
            )

        return self._stream(tell, _sub_operation)

    def _stream(
        self,
        tell: Callable[[MemoryObjectSendStream[U]], Awaitable[None]],
        unpack: Callable[[U], Sequence[T]],
    ) -> BridgedStream[T, U]:
        """Hand an actor the sending end of a new bounded stream; iterate the other end."""

        async def start() -> MemoryObjectReceiveStream[U]:
            send, receive = anyio.create_memory_object_stream[U](_STREAM_BUFFER)
            try:
                with anyio.fail_after(self._timeout):
                    await tell(send)
            except BaseException:
                send.close()
                receive.close()
                raise
            return receive

        return BridgedStream(self._bridge, self._bridge.call(start), unpack)

    def prepare(self, item: SendItem, accepted: Sequence[str]) -> Prepared:
        """``item`` in one of the ``accepted`` syntaxes (C-GET)."""
        return self._prepare(item, accepted)
