"""All the senders of a node: a ``one_for_one`` supervisor and a registry to find them.

One :class:`~xvactor.actors.sender.SenderActor` per configured destination, keyed by its
name; more are created on demand for ad hoc peers ``(host, port, AE title)``, keyed
``AE@host:port``.  A crash of one sender restarts that sender only.  Ad hoc destinations
with queued work in the outbox get their sender back when the node starts again.

The outbox (``<data_dir>/outbox.sqlite``) is shared with other processes: ``xvactor store
--queue`` adds rows and then rings the node's *doorbell*, a Linux abstract Unix datagram
socket named after the data directory, so a running node sends them at once.  Without a
running node the datagram is simply lost; the next node to start finds the rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from xvactor.actors.sender import SenderActor, SenderInbox, SenderSettings, Wake
from xvactor.config import Destination, NodeConfig, QueueKind
from xvactor.dicom.scu import AssociationPort, Peer, PynetdicomPort
from xvactor.runtime import (
    Actor,
    ActorDead,
    ActorRef,
    ChildSpec,
    Limiters,
    LoopBridge,
    MailboxFull,
    Message,
    Strategy,
    Supervisor,
)
from xvactor.sender.queue import (
    OUTBOX_FILE,
    DurableOutbox,
    MemoryOutbox,
    Outbox,
    pending_destinations,
)
from xvactor.sender.timer import ThreadTimer, Timer

__all__ = [
    "SENDER_SHUTDOWN",
    "Senders",
    "ad_hoc_key",
    "ring_doorbell",
    "sender_limiters",
    "settings_from",
]

LOGGER = logging.getLogger("xvactor.sender")

SENDER_SHUTDOWN = 10.0
"""Seconds a sender gets to finish its slice and release its association on stop."""

_AD_HOC = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>.+):(?P<port>\d{1,5})$")


def ad_hoc_key(ae_title: str, host: str, port: int) -> str:
    """The outbox key of an ad hoc destination."""
    return f"{ae_title}@{host}:{port}"


def sender_limiters(config: NodeConfig) -> dict[str, int]:
    """Thread limiter capacities the senders need; merge them into the node's ``Limiters``."""
    parallel = max(4, len(config.destinations) + 2)
    return {"associate": parallel, "dimse": parallel, "outbox": 2}


def settings_from(config: NodeConfig) -> SenderSettings:
    """The senders' settings from ``[sender]``."""
    sender = config.sender
    return SenderSettings(
        idle_release=sender.idle_release,
        retry_initial=sender.retry_initial,
        retry_max=sender.retry_max,
        retry_limit=sender.retry_limit,
    )


def _doorbell_name(data_dir: Path) -> bytes:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return b"\0xvactor-outbox-" + digest.encode()


def ring_doorbell(data_dir: Path, destination: str) -> bool:
    """Tell a node running on ``data_dir`` that ``destination`` has new queued work.

    Returns
    -------
    bool
        Whether a running node received it (``False``: none runs; the next one will see
        the work when it starts).
    """
    if not hasattr(socket, "AF_UNIX"):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(destination.encode("utf-8"), _doorbell_name(data_dir))
        except OSError:
            return False
    return True


class _Doorbell(Actor[Message]):
    """Listens on the doorbell socket and wakes the sender a datagram names."""

    concurrency: ClassVar[int] = 1

    def __init__(self, data_dir: Path, lookup: Callable[[str], ActorRef[SenderInbox] | None]):
        self._data_dir = data_dir
        self._lookup = lookup
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    async def started(self) -> None:
        if not hasattr(socket, "AF_UNIX"):
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(_doorbell_name(self._data_dir))
        except OSError as exc:
            sock.close()  # another node on this data directory already listens
            LOGGER.warning("outbox doorbell unavailable: %s", exc)
            return
        self._sock = sock
        bridge = LoopBridge()
        self._thread = threading.Thread(
            target=self._listen, args=(sock, bridge), name="xvactor-doorbell", daemon=True
        )
        self._thread.start()

    def _listen(self, sock: socket.socket, bridge: LoopBridge) -> None:
        while True:
            try:
                data = sock.recv(1024)
            except OSError:
                return
            if not data:
                return
            name = data.decode("utf-8", errors="replace")

            async def wake(name: str = name) -> None:
                ref = self._lookup(name)
                if ref is not None:
                    with contextlib.suppress(MailboxFull, ActorDead):
                        ref.try_tell(Wake())

            try:
                bridge.call(wake)
            except ActorDead:
                return

    async def stopping(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    async def receive(self, message: Message) -> object:
        return None


class Senders:
    """The senders supervisor and registry of a node.

    Parameters
    ----------
    config : NodeConfig
        Destinations, ``[sender]`` settings, data directory, identity and timeouts.
    limiters : Limiters
        With the kinds of :func:`sender_limiters`.
    port : callable, optional
        Builds the association port for a :class:`~xvactor.dicom.scu.Peer` (tests fake it).
    timer : callable, optional
        Builds the wall-clock timer (called on the event loop).
    doorbell : bool, optional
        Listen for ``xvactor store --queue`` (durable queues only).

    Attributes
    ----------
    supervisor : Supervisor
        ``one_for_one``; run it as a child of the node's tree (``SupervisorSpec``).
    """

    def __init__(
        self,
        config: NodeConfig,
        limiters: Limiters,
        *,
        port: Callable[[Peer], AssociationPort] = PynetdicomPort,
        timer: Callable[[], Timer] = ThreadTimer,
        doorbell: bool = True,
    ) -> None:
        self._config = config
        self._limiters = limiters
        self._port = port
        self._timer = timer
        self._data_dir = config.data_path.resolve()
        self._settings = settings_from(config)
        self._refs: dict[str, ActorRef[SenderInbox]] = {}
        self._memory: dict[str, MemoryOutbox] = {}
        durable = config.sender.queue is QueueKind.DURABLE
        children: list[ChildSpec] = []
        if durable and doorbell:
            ref: ActorRef[Message] = ActorRef("outbox-doorbell", mailbox_size=1)
            children.append(
                ChildSpec(ref=ref, factory=lambda: _Doorbell(self._data_dir, self._refs.get))
            )
        for destination in config.destinations:
            children.append(
                self._child(destination.name, Peer.for_destination(destination, config))
            )
        if durable:
            for key in pending_destinations(self._data_dir / OUTBOX_FILE):
                found = _AD_HOC.match(key)
                if key not in self._refs and found is not None:
                    peer = self._ad_hoc_peer(found["host"], int(found["port"]), found["ae"])
                    children.append(self._child(key, peer))
        self.supervisor = Supervisor(
            "senders", children, strategy=Strategy.ONE_FOR_ONE, max_restarts=10, max_seconds=60
        )

    def _outbox(self, key: str) -> Callable[[], Outbox]:
        if self._config.sender.queue is QueueKind.MEMORY:
            memory = self._memory.setdefault(key, MemoryOutbox(key))
            return lambda: memory
        path = self._data_dir / OUTBOX_FILE

        def durable() -> Outbox:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            return DurableOutbox(path, key)

        return durable

    def _child(self, key: str, peer: Peer) -> ChildSpec:
        ref: ActorRef[SenderInbox] = ActorRef(
            f"sender:{key}", mailbox_size=self._config.sender.mailbox
        )
        port = self._port(peer)
        outbox = self._outbox(key)
        self._refs[key] = ref
        return ChildSpec(
            ref=ref,
            factory=lambda: SenderActor(
                ref,
                port=port,
                outbox=outbox,
                settings=self._settings,
                limiters=self._limiters,
                timer=self._timer,
            ),
            shutdown=SENDER_SHUTDOWN,
        )

    def _ad_hoc_peer(self, host: str, port: int, ae_title: str) -> Peer:
        config = self._config
        ad_hoc = Destination(name="", ae_title=ae_title, host=host, port=port)
        return Peer.for_destination(ad_hoc, config)

    def by_name(self, name: str) -> ActorRef[SenderInbox]:
        """The sender of configured destination ``name`` (or of an ad hoc key).

        Raises
        ------
        KeyError
            No such destination.
        """
        try:
            return self._refs[name]
        except KeyError:
            raise KeyError(f"no destination named {name!r}") from None

    def by_ae_title(self, ae_title: str) -> ActorRef[SenderInbox] | None:
        """The sender of the first configured destination with this AE title (C-MOVE)."""
        for destination in self._config.destinations:
            if destination.ae_title == ae_title:
                return self._refs[destination.name]
        return None

    async def ad_hoc(self, host: str, port: int, ae_title: str) -> ActorRef[SenderInbox]:
        """The sender for ``(host, port, AE title)``, created (and started) if needed."""
        for destination in self._config.destinations:
            if (destination.host, destination.port, destination.ae_title) == (
                host,
                port,
                ae_title,
            ):
                return self._refs[destination.name]
        key = ad_hoc_key(ae_title, host, port)
        ref = self._refs.get(key)
        if ref is None:
            child = self._child(key, self._ad_hoc_peer(host, port, ae_title))
            await self.supervisor.add_child(child)
            ref = self._refs[key]
        return ref
