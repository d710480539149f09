"""The listener actor: owns pynetdicom's servers for every configured listen address.

It starts last and stops first in the node's tree, so no association is accepted before
storage and catalog are ready, and on shutdown the servers stop accepting and drain
in-flight C-STOREs while storage and catalog are still running.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import assert_never

from xvactor.actors.resolver import ResolverInbox
from xvactor.actors.storage import StorageInbox
from xvactor.config import NodeConfig
from xvactor.dicom.qr_bridge import BridgedQueryServices, MoveRouter
from xvactor.dicom.retrieve import prepare_for_peer
from xvactor.dicom.server import Channel, InboundServer
from xvactor.runtime import Actor, ActorRef, Limiters, LoopBridge, Message, run_blocking
from xvactor.storage.filing import Filing

__all__ = ["GetAddresses", "ListenerActor", "ListenerAddresses", "ListenerInbox", "addresses"]


class GetAddresses(Message, frozen=True, tag=True, kw_only=True):
    """Query: where is the node listening?"""


class ListenerAddresses(Message, frozen=True, tag=True, kw_only=True):
    """Reply: bound (host, port) pairs, in configuration order."""

    addresses: tuple[tuple[str, int], ...]


ListenerInbox = GetAddresses


class ListenerActor(Actor[ListenerInbox]):
    """Runs the DICOM listeners; received instances are filed on their association's thread."""

    def __init__(
        self,
        config: NodeConfig,
        storage: ActorRef[StorageInbox],
        limiters: Limiters,
        *,
        filing: Filing,
        spool_dir: Path,
        channels: Sequence[Channel] = (),
        resolver: ActorRef[ResolverInbox] | None = None,
        router: MoveRouter | None = None,
    ) -> None:
        self._config = config
        self._storage = storage
        self._filing = filing
        self._resolver = resolver
        self._router = router
        self._limiters = limiters
        self._spool_dir = spool_dir
        self._channels = channels
        self._server: InboundServer | None = None

    async def started(self) -> None:
        """Bind every listener (or serve the channels); the node is ready when this returns."""
        bridge = LoopBridge()
        services = None
        if self._resolver is not None and self._router is not None:
            services = BridgedQueryServices(
                bridge,
                self._resolver,
                self._router,
                functools.partial(prepare_for_peer, scratch=self._spool_dir),
                timeout=self._config.timeouts.dimse,
            )
        server = InboundServer(
            self._config,
            bridge,
            self._storage,
            filing=self._filing,
            spool_dir=self._spool_dir,
            channels=self._channels,
            query_services=services,
        )
        await run_blocking(self._limiters, "listener", server.start)
        self._server = server

    async def stopping(self) -> None:
        """Stop accepting and drain in-flight C-STOREs (bounded by the shutdown timeout)."""
        if self._server is not None:
            server, self._server = self._server, None
            await run_blocking(
                self._limiters,
                "listener",
                lambda: server.stop(drain_timeout=self._config.timeouts.shutdown),
            )

    async def receive(self, message: ListenerInbox) -> object:
        """Dispatch one message."""
        match message:
            case GetAddresses():
                bound = tuple(self._server.addresses) if self._server else ()
                return ListenerAddresses(addresses=bound)
            case _:
                assert_never(message)


async def addresses(ref: ActorRef[ListenerInbox], *, timeout: float = 5.0) -> list[tuple[str, int]]:
    """The node's bound listen addresses."""
    reply = await ref.ask(GetAddresses(), expect=ListenerAddresses, timeout=timeout)
    return list(reply.addresses)
