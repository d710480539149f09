"""The outbound association port: associate with a destination and send C-STOREs on it.

A sender opens an association with the presentation contexts its queued work needs
(:func:`contexts_for`), sends one instance at a time on it (:meth:`StoreAssociation.send`)
and releases it when idle.  Every call blocks; actors run them through ``run_blocking``.

How an instance goes out (PS3.7 Section 9.1.1, PS3.8 Annex E):

* the dataset bytes after the File Meta Information are sent as they are when the peer
  accepted the file's transfer syntax: no decoding (``xvactor.dicom.prepare``);
* every socket gets TCP_NODELAY (Nagle's algorithm costs ~40 ms per C-STORE otherwise);
* the DUL waits on its socket instead of polling (``xvactor.dicom.reactor.install``), and
  the association's own reactor is parked before its thread starts: a C-STORE user never
  serves requests on it, and a parked reactor cannot take our C-STORE-RSP off the DIMSE
  queue (the race pynetdicom's ``send_c_store`` has).

:class:`AssociationPort` and :class:`StoreAssociation` are the seams a sender is tested
through (``xvactor.testing`` fakes them); :class:`PynetdicomPort` is the real one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.transport import AssociationSocket

from xvactor.config import DEFAULT_IMPLEMENTATION_CLASS_UID, Destination, NodeConfig, Tls
from xvactor.dicom import reactor
from xvactor.dicom.outcome import Attempt, Problem
from xvactor.dicom.prepare import UNCOMPRESSED, TranscodingNeeded, UnreadableFile, payload_for
from xvactor.dicom.tls import client_context
from xvactor.sender.queue import SendItem
from xvactor.transcode.options import OutputEncoding
from xvactor.transcode.syntaxes import resolve as resolve_syntax

__all__ = [
    "LOCK_DIR",
    "MAX_CONTEXTS",
    "AssociationFailed",
    "AssociationPort",
    "DestinationLock",
    "Peer",
    "PynetdicomPort",
    "StoreAssociation",
    "association_response",
    "contexts_for",
]

AE_T = TypeVar("AE_T", bound=AE)

LOCK_DIR = ".senders"
"""Under the data directory: one lock file per destination (see :class:`DestinationLock`)."""

MAX_CONTEXTS = 128
"""Presentation contexts per association: odd context IDs 1-255 (PS3.8 Section 9.3.2.2)."""


class AssociationFailed(Exception):
    """No association: refused, unreachable, rejected, or aborted while negotiating."""


@dataclass(frozen=True)
class Peer:
    """Where and how to associate: the remote AE, our identity, limits and timeouts."""

    host: str
    port: int
    called_ae_title: str
    calling_ae_title: str = "XVACTOR"
    tls: Tls | None = None
    max_pdu: int = 262144
    connect_timeout: float = 10.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    implementation_class_uid: str = DEFAULT_IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = "XVACTOR_010"
    lock_dir: Path | None = None
    """Where the per-destination lock files live (``None``: no cross-process lock)."""
    output: OutputEncoding | None = None
    """The destination's output encoding (``None``: as stored)."""

    @classmethod
    def for_destination(
        cls, destination: Destination, config: NodeConfig, *, calling_ae_title: str = ""
    ) -> Peer:
        """The peer a configured destination describes, with the node's identity.

        Our calling AE title: the destination's ``local_ae_title``, else
        ``calling_ae_title``, else the node's ``ae_title``.
        """
        return cls(
            host=destination.host,
            port=destination.port,
            called_ae_title=destination.ae_title,
            calling_ae_title=destination.local_ae_title or calling_ae_title or config.ae_title,
            tls=destination.tls,
            max_pdu=config.max_pdu,
            connect_timeout=config.timeouts.connect,
            acse_timeout=config.timeouts.acse,
            dimse_timeout=config.timeouts.dimse,
            implementation_class_uid=config.implementation_class_uid,
            implementation_version_name=config.implementation_version_name,
            lock_dir=config.data_path.resolve() / LOCK_DIR,
            output=destination.output,
        )

    def configure(self, ae: AE_T) -> AE_T:
        """Give a requestor ``ae`` our identity, PDU limit and per-phase timeouts."""
        ae.implementation_class_uid = self.implementation_class_uid
        ae.implementation_version_name = self.implementation_version_name
        ae.connection_timeout = self.connect_timeout
        ae.acse_timeout = self.acse_timeout
        ae.dimse_timeout = self.dimse_timeout
        ae.maximum_pdu_size = self.max_pdu
        return ae

    def __str__(self) -> str:
        return f"{self.called_ae_title}@{self.host}:{self.port}"


def contexts_for(needs: Iterable[tuple[str, str]]) -> list[tuple[str, tuple[str, ...]]]:
    """The presentation contexts to propose for ``(SOP class, transfer syntax)`` needs.

    One context per needed pair, holding that syntax alone (so the peer cannot pick
    another and force a conversion), and per SOP class one more with the uncompressed
    syntaxes, a fallback the sender can convert to.  In order of first need, at most
    :data:`MAX_CONTEXTS`.
    """
    contexts: list[tuple[str, tuple[str, ...]]] = []
    seen: set[tuple[str, str]] = set()
    classes: list[str] = []
    for sop_class, syntax in needs:
        if (sop_class, syntax) in seen:
            continue
        seen.add((sop_class, syntax))
        if sop_class not in classes:
            classes.append(sop_class)
        contexts.append((sop_class, (syntax,)))
    fallbacks = [(sop_class, UNCOMPRESSED) for sop_class in classes]
    return (contexts + fallbacks)[:MAX_CONTEXTS]


class StoreAssociation(Protocol):
    """An established association on which instances are sent one at a time."""

    @property
    def proposed(self) -> frozenset[tuple[str, str]]:
        """The ``(SOP class, transfer syntax)`` pairs this association negotiated."""
        ...

    @property
    def established(self) -> bool:
        """Whether the association is still up."""
        ...

    def send(
        self,
        item: SendItem,
        *,
        move_originator_ae_title: str = "",
        move_originator_message_id: int = 0,
    ) -> Attempt:
        """Send one instance; return what happened (never raises for DICOM outcomes)."""
        ...

    def release(self) -> None:
        """Release (A-RELEASE); aborts if the peer does not answer."""
        ...

    def abort(self) -> None:
        """Abort (A-ABORT)."""
        ...


class AssociationPort(Protocol):
    """Opens associations to one destination."""

    @property
    def peer(self) -> Peer:
        """The destination."""
        ...

    def open(self, contexts: Sequence[tuple[str, Sequence[str]]]) -> StoreAssociation:
        """Associate, proposing ``contexts``.

        Raises
        ------
        AssociationFailed
            With a one-line reason.
        """
        ...


def _nodelay(event: evt.Event) -> None:
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _ClosingSocket(AssociationSocket):
    """pynetdicom's socket, closed even when it never connected.

    pynetdicom's ``_shutdown_socket`` skips ``close()`` when ``shutdown()`` fails, which
    it always does on a refused connection: every failed attempt would leak a socket.
    """

    def _shutdown_socket(self) -> None:
        sock = self.socket
        try:
            super()._shutdown_socket()
        finally:
            if sock is not None:
                sock.close()


class _SenderAE(AE):
    """An AE whose requestor associations are event driven and whose reactor is parked."""

    def _create_socket(self, assoc: Association, address: Any, tls_args: Any) -> Any:
        sock = _ClosingSocket(assoc, address=address)
        sock.tls_args = tls_args
        reactor.install(assoc)
        # Parked before the association thread exists: it blocks at its first checkpoint,
        # so only our send() ever reads the DIMSE queue.  release()/abort()/kill() still
        # work (they wait for a paused reactor, then set the checkpoint to end it).
        assoc._reactor_checkpoint.clear()
        return sock


def association_response(assoc: Association) -> A_ASSOCIATE | None:
    """The peer's A-ASSOCIATE response (PS3.8 7.1.1), also where pynetdicom dropped it.

    pynetdicom 3.0's requestor sends the A-ASSOCIATE-RQ, waits until its transport is
    ready, and gives up if the transport is no longer connected.  A peer that rejects at
    once and closes (dcmqrscp on loopback) may have been answered by then: the DUL has
    queued its A-ASSOCIATE-RJ, yet the association reports neither a rejection nor a
    response (seen in 2 of 15 runs).  The queued primitive still says what the peer said.
    """
    primitive = assoc.acceptor.primitive
    if primitive is not None:
        return primitive
    left = assoc.dul.receive_pdu(wait=False)
    return left if isinstance(left, A_ASSOCIATE) else None


def _why_not(peer: Peer, assoc: Association) -> str:
    primitive = association_response(assoc)
    if primitive is not None and primitive.result in (0x01, 0x02):
        return (
            f"association rejected by {peer} ({primitive.result_str}, "
            f"source: {primitive.source_str}): {primitive.reason_str}"
        )
    if primitive is None:
        try:
            with socket.create_connection((peer.host, peer.port), timeout=peer.connect_timeout):
                return f"no association response from {peer} within {peer.acse_timeout:g} s"
        except ConnectionRefusedError:
            return f"connection refused by {peer.host}:{peer.port}"
        except TimeoutError:
            return f"timed out connecting to {peer.host}:{peer.port}"
        except OSError as exc:
            return f"cannot connect to {peer.host}:{peer.port}: {exc.strerror or exc}"
    return f"association aborted by {peer} during negotiation"


def _preferred_syntax(output: OutputEncoding | None) -> str:
    """The transfer syntax a destination's output options ask for ("" for as stored)."""
    if output is None:
        return ""
    if output.transfer_syntax:
        return str(resolve_syntax(output.transfer_syntax))
    if output.big_endian:
        return "1.2.840.10008.1.2.2"  # Explicit VR Big Endian
    if output.explicit_vr is False:
        return "1.2.840.10008.1.2"  # Implicit VR Little Endian
    return ""


class DestinationLock:
    """One association at a time to a destination across the node's processes.

    The receive workers and the main process each run senders; an exclusive ``flock`` on
    ``<data>/.senders/<destination>.lock`` is held for the life of each association, so
    the rule holds node-wide.  The kernel frees it if a process dies.  A sender waiting
    for it waits on a worker thread (the other process releases after its batch or after
    ``sender.idle_release``).
    """

    def __init__(self, directory: Path, peer: Peer) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(str(peer).encode(), usedforsecurity=False).hexdigest()[:16]
        self._path = directory / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Block until no other association to the destination is open."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the next association to the destination open (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


class _PynetdicomAssociation:
    """A :class:`StoreAssociation` over a pynetdicom requestor association."""

    def __init__(
        self,
        assoc: Association,
        proposed: frozenset[tuple[str, str]],
        lock: DestinationLock | None = None,
        output: OutputEncoding | None = None,
    ) -> None:
        self._assoc = assoc
        self._lock = lock
        self._output = output
        self._proposed = proposed
        self._message_id = 0
        accepted: dict[str, dict[str, int]] = {}
        for cx in assoc.accepted_contexts:
            syntaxes = accepted.setdefault(str(cx.abstract_syntax), {})
            syntaxes.setdefault(str(cx.transfer_syntax[0]), int(cx.context_id or 0))
        self._accepted: Mapping[str, Mapping[str, int]] = accepted

    @property
    def proposed(self) -> frozenset[tuple[str, str]]:
        return self._proposed

    @property
    def established(self) -> bool:
        return bool(self._assoc.is_established)

    def send(
        self,
        item: SendItem,
        *,
        move_originator_ae_title: str = "",
        move_originator_message_id: int = 0,
    ) -> Attempt:
        accepted = self._accepted.get(item.sop_class_uid, {})
        if not accepted:
            return Attempt(
                problem=Problem.NO_CONTEXT,
                error_comment="Peer accepted no presentation context for the SOP class",
            )
        try:
            payload = payload_for(item.path, item.transfer_syntax_uid, list(accepted), self._output)
        except UnreadableFile as exc:
            return Attempt(problem=Problem.UNREADABLE, error_comment=str(exc)[:64])
        except TranscodingNeeded as exc:
            return Attempt(problem=Problem.NO_CONTEXT, error_comment=str(exc)[:64])
        if not self._assoc.is_established:
            return Attempt(problem=Problem.NO_RESPONSE, error_comment="Association lost")
        self._message_id = self._message_id % 0xFFFF + 1
        request = C_STORE()
        request.MessageID = self._message_id
        request.Priority = 2
        request.AffectedSOPClassUID = item.sop_class_uid
        request.AffectedSOPInstanceUID = item.sop_instance_uid
        if move_originator_ae_title:
            request.MoveOriginatorApplicationEntityTitle = move_originator_ae_title
            request.MoveOriginatorMessageID = move_originator_message_id
        request.DataSet = BytesIO(payload.data)
        dimse = self._assoc.dimse
        dimse.send_msg(request, accepted[payload.transfer_syntax_uid])
        _, response = dimse.get_msg(block=True)
        if not isinstance(response, C_STORE) or response.Status is None:
            self.abort()
            return Attempt(
                problem=Problem.NO_RESPONSE,
                error_comment="No C-STORE response (timed out or aborted)",
            )
        return Attempt(status=int(response.Status), error_comment=str(response.ErrorComment or ""))

    def release(self) -> None:
        try:
            if self._assoc.is_established:
                self._assoc.release()
            if self._assoc.is_established:
                self._assoc.abort()
        finally:
            if self._lock is not None:
                self._lock.release()

    def abort(self) -> None:
        try:
            if not (self._assoc.is_released or self._assoc.is_aborted):
                self._assoc.abort()
        finally:
            if self._lock is not None:
                self._lock.release()


class PynetdicomPort:
    """The real :class:`AssociationPort`: pynetdicom, TLS if configured, TCP_NODELAY."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        ae = peer.configure(_SenderAE(ae_title=peer.calling_ae_title))
        ae.network_timeout = None  # the sender releases idle associations itself
        self._ae = ae

    @property
    def peer(self) -> Peer:
        """The destination."""
        return self._peer

    def open(self, contexts: Sequence[tuple[str, Sequence[str]]]) -> StoreAssociation:
        """Associate with the peer, proposing ``contexts``."""
        peer = self._peer
        tls_args = None
        if peer.tls is not None:
            tls_args = (client_context(peer.tls), peer.host)
        requested = [build_context(sop_class, list(syntaxes)) for sop_class, syntaxes in contexts]
        preferred = _preferred_syntax(peer.output)
        if preferred:
            # The destination's output syntax, offered first for every SOP class.
            classes = dict.fromkeys(sop_class for sop_class, _ in contexts)
            room = MAX_CONTEXTS - len(requested)
            requested = [build_context(c, [preferred]) for c in classes][:room] + requested
        lock = DestinationLock(peer.lock_dir, peer) if peer.lock_dir is not None else None
        if lock is not None:
            lock.acquire()
        try:
            assoc = self._associate(requested, tls_args)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        proposed = frozenset(
            (sop_class, syntax) for sop_class, syntaxes in contexts for syntax in syntaxes
        )
        return _PynetdicomAssociation(assoc, proposed, lock, peer.output)

    def _associate(self, requested: list[Any], tls_args: Any) -> Association:
        peer = self._peer
        try:
            assoc = self._ae.associate(
                peer.host,
                peer.port,
                contexts=requested,
                ae_title=peer.called_ae_title,
                max_pdu=peer.max_pdu,
                tls_args=tls_args,
                evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)],
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise AssociationFailed(f"cannot associate with {peer}: {exc}") from exc
        if not assoc.is_established:
            raise AssociationFailed(_why_not(peer, assoc))
        return assoc
