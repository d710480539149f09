"""Query/Retrieve and worklist as a user: C-ECHO, C-FIND, C-MOVE, C-GET on pynetdicom.

Blocking; the async client (:mod:`xvactor.client`) runs every call on a worker thread with
:func:`xvactor.runtime.run_blocking`.  Covered services (PS3.4 Annex C and K):

* C-FIND in the Patient Root, Study Root and Patient/Study Only Q/R information models
  (PS3.4 C.6) and the Modality Worklist information model (PS3.4 K.6.1);
* C-MOVE and C-GET in the three Q/R models (PS3.4 C.4.2, C.4.3);
* C-CANCEL of any of them (PS3.7 Section 9.3.2.3): :meth:`Operation.cancel` may be called
  from any thread while :meth:`Operation.run` waits for responses on its own.

Every socket opened here gets TCP_NODELAY (pynetdicom leaves Nagle's algorithm on, which
costs a delayed-ACK stall per small PDU).  Association failures raise
:class:`AssociationFailed` with one line for the user; DIMSE outcomes are returned, never
raised.  :class:`StorageSCP` is the other half of a C-MOVE to ourselves: a pynetdicom
server on its own threads that takes the peer's C-STORE sub-operations (PS3.4 C.4.2.2).

The module is longer than the house's 400 lines on purpose: it is the only place the
client's Q/R associations touch pynetdicom, and the C-MOVE's receiving half belongs with it.
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE

from xvactor.config import DEFAULT_IMPLEMENTATION_CLASS_UID
from xvactor.dicom.contexts import (
    FIND_SOP_CLASSES,
    GET_SOP_CLASSES,
    MODALITY_WORKLIST_FIND,
    MOVE_SOP_CLASSES,
    SERVICE_TRANSFER_SYNTAXES,
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    VERIFICATION,
)
from xvactor.dicom.scu import AssociationFailed, Peer, association_response
from xvactor.dicom.status import Status, status_for
from xvactor.dicom.tls import client_context

__all__ = [
    "InstanceHandler",
    "Operation",
    "QueryModel",
    "QueryOutcome",
    "ReceivedInstance",
    "RetrieveOutcome",
    "StorageSCP",
    "connect_failure",
    "echo",
    "nodelay",
    "storage_handler",
]

# Medium priority (PS3.7 Table 9.3-1); pynetdicom's default is low.
_MEDIUM = 0
# pynetdicom proposes at most 128 presentation contexts; one is the Q/R GET context.
_MAX_GET_STORAGE_CONTEXTS = 127


class QueryModel(enum.StrEnum):
    """The information models of the conformance target's client AE."""

    PATIENT = "patient"
    """Patient Root Q/R (PS3.4 C.6.1)."""
    STUDY = "study"
    """Study Root Q/R (PS3.4 C.6.2)."""
    PATIENT_STUDY = "patient-study"
    """Patient/Study Only Q/R (PS3.4 C.6.3, retired but in the target)."""
    WORKLIST = "worklist"
    """Modality Worklist (PS3.4 K.6.1), FIND only."""

    def sop_class(self, service: str) -> str:
        """Return the SOP Class UID of ``service`` ("find", "move" or "get") in this model.

        Raises
        ------
        ValueError
            The model has no such service (the worklist is FIND only).
        """
        if self is QueryModel.WORKLIST:
            if service != "find":
                raise ValueError(f"the worklist model has no C-{service.upper()}")
            return MODALITY_WORKLIST_FIND
        index = (QueryModel.PATIENT, QueryModel.STUDY, QueryModel.PATIENT_STUDY).index(self)
        table = {"find": FIND_SOP_CLASSES, "move": MOVE_SOP_CLASSES, "get": GET_SOP_CLASSES}
        return table[service][index]


@dataclass(frozen=True)
class QueryOutcome:
    """The end of a C-FIND: final status, matches seen, whether it was cancelled."""

    status: int
    error_comment: str = ""
    matches: int = 0
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        """Success, or cancelled by us (PS3.4 C.4.1.1.4: Cancel is the answer to C-CANCEL)."""
        return self.status == Status.SUCCESS or (self.cancelled and self.status == Status.CANCEL)


@dataclass(frozen=True)
class RetrieveOutcome:
    """The end of a C-MOVE or C-GET: final status and sub-operation counts (PS3.4 C.4.2.1.5)."""

    status: int
    error_comment: str = ""
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    failed_sop_instances: tuple[str, ...] = ()
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        """Success with no failed sub-operation."""
        return self.status == Status.SUCCESS and self.failed == 0


@dataclass(frozen=True)
class ReceivedInstance:
    """One instance received by a C-STORE sub-operation, as a PS3.10 file in memory."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    part10: bytes = field(repr=False)
    """Preamble, File Meta Information (PS3.10 Section 7.1) and the dataset as received."""


#: Takes a received instance; an exception becomes the C-STORE status (``status_for``).
InstanceHandler = Callable[[ReceivedInstance], None]


def nodelay(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler: TCP_NODELAY on the association's socket."""
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def storage_handler(handler: InstanceHandler) -> Callable[[evt.Event], Any]:
    """Wrap ``handler`` as an ``EVT_C_STORE`` handler that always answers a status."""

    def handle_store(event: evt.Event) -> Any:
        try:
            context = event.context
            request = cast(C_STORE, event.request)
            instance = ReceivedInstance(
                sop_class_uid=str(request.AffectedSOPClassUID),
                sop_instance_uid=str(request.AffectedSOPInstanceUID),
                transfer_syntax_uid=str(context.transfer_syntax),
                part10=event.encoded_dataset(include_meta=True),
            )
            handler(instance)
        except Exception as exc:  # the boundary: every failure becomes a status
            reply = status_for(exc)
            answer = Dataset()
            answer.Status = int(reply.status)
            if reply.error_comment:
                answer.ErrorComment = reply.error_comment
            return answer
        return Status.SUCCESS

    return handle_store


def connect_failure(host: str, port: int, timeout: float) -> str:
    """Find out why no association response came (pynetdicom only logs it)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return f"timed out waiting for an association response ({timeout:g} s)"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port}"
    except TimeoutError:
        return f"timed out connecting to {host}:{port}"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


class _RequestorAE(AE):
    """An AE that keeps its raw socket, to close it when a connect fails.

    pynetdicom 3.0 "shuts down" a socket whose connect failed, which raises ENOTCONN
    before the close: the descriptor would leak until garbage collection.
    """

    raw_socket: socket.socket | None = None

    def _create_socket(self, assoc: Association, address: Any, tls_args: Any) -> Any:
        transport = super()._create_socket(assoc, address, tls_args)
        self.raw_socket = transport.socket
        return transport


def _ae(peer: Peer) -> _RequestorAE:
    ae = peer.configure(_RequestorAE(ae_title=peer.calling_ae_title))
    ae.network_timeout = max(peer.dimse_timeout, peer.acse_timeout)
    return ae


def _associate(
    peer: Peer,
    contexts: Sequence[Any],
    *,
    ext_neg: Sequence[Any] = (),
    handlers: Iterable[tuple[Any, Callable[..., Any]]] = (),
) -> Association:
    """Open an association to ``peer`` proposing ``contexts``, or raise AssociationFailed."""
    ae = _ae(peer)
    ae.requested_contexts = list(contexts)
    tls_args = None
    if peer.tls is not None:
        tls_args = (client_context(peer.tls), peer.host)
    assoc = ae.associate(
        peer.host,
        peer.port,
        ae_title=peer.called_ae_title,
        max_pdu=peer.max_pdu,
        ext_neg=list(ext_neg) or None,
        tls_args=tls_args,
        evt_handlers=[(evt.EVT_CONN_OPEN, nodelay), *handlers],
    )
    if assoc.is_established:
        return assoc
    if ae.raw_socket is not None:
        ae.raw_socket.close()
    rj = association_response(assoc)
    if rj is not None and rj.result in (0x01, 0x02):  # rejected, permanent or transient
        reason = f"({rj.result_str}, source: {rj.source_str}): {rj.reason_str}"
        raise AssociationFailed(f"association rejected by {peer} {reason}")
    if rj is None:
        raise AssociationFailed(connect_failure(peer.host, peer.port, peer.connect_timeout))
    if rj.result == 0x00:  # accepted, then aborted by pynetdicom: no context was accepted
        wanted = UID(str(contexts[0].abstract_syntax)).name
        raise AssociationFailed(f"{peer} accepted no presentation context for {wanted}")
    raise AssociationFailed(f"association aborted by {peer}")


def _accepted(assoc: Association, sop_class: str, peer: Peer) -> int:
    """The context ID the peer accepted for ``sop_class``, or raise AssociationFailed."""
    for context in assoc.accepted_contexts:
        if context.abstract_syntax == sop_class:
            return cast(int, context.context_id)
    assoc.release()
    raise AssociationFailed(f"{peer} accepted no presentation context for {sop_class}")


def echo(peer: Peer) -> int:
    """Send one C-ECHO (PS3.7 Section 9.1.5) and return its status.

    Raises
    ------
    AssociationFailed
        No association, or no response to the C-ECHO.
    """
    assoc = _associate(peer, [build_context(VERIFICATION, list(SERVICE_TRANSFER_SYNTAXES))])
    try:
        answer = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if not answer or "Status" not in answer:
        raise AssociationFailed(f"no C-ECHO response from {peer} (timed out or aborted)")
    return int(answer.Status)


def _storage_contexts(sop_classes: Sequence[str] | None) -> list[str]:
    if sop_classes is None:
        return [str(cx.abstract_syntax) for cx in StoragePresentationContexts]
    unique = list(dict.fromkeys(sop_classes))
    if len(unique) > _MAX_GET_STORAGE_CONTEXTS:
        raise ValueError(f"C-GET can propose at most {_MAX_GET_STORAGE_CONTEXTS} SOP classes")
    return unique


class Operation:
    """One C-FIND, C-MOVE or C-GET on its own association, cancellable from any thread.

    Parameters
    ----------
    peer : Peer
        The SCP.
    service : {"find", "move", "get"}
        The DIMSE-C service.
    model : QueryModel
        The information model.
    identifier : pydicom.Dataset
        The request Identifier (PS3.4 C.4.1.1.3).
    on_match : callable, optional
        C-FIND only: called with each pending response's Identifier; return ``False`` to
        cancel (the rest of the responses are then drained and dropped).
    move_destination : str, optional
        C-MOVE only: the AE title the peer sends the instances to.
    on_instance : InstanceHandler, optional
        C-GET only: takes each instance of the C-STORE sub-operations.
    storage_sop_classes : sequence of str, optional
        C-GET only: the storage SOP classes proposed with the SCP role (PS3.7 D.3.3.4);
        default pynetdicom's 120 most common ones.
    """

    def __init__(
        self,
        peer: Peer,
        service: str,
        model: QueryModel,
        identifier: Dataset,
        *,
        on_match: Callable[[Dataset], bool] | None = None,
        move_destination: str | None = None,
        on_instance: InstanceHandler | None = None,
        storage_sop_classes: Sequence[str] | None = None,
    ) -> None:
        if service == "move" and not move_destination:
            raise ValueError("C-MOVE needs a move destination")
        if service == "get" and on_instance is None:
            raise ValueError("C-GET needs an instance handler")
        self.peer = peer
        self.service = service
        self.sop_class = model.sop_class(service)
        self.identifier = identifier
        self._on_match = on_match
        self._move_destination = move_destination or ""
        self._on_instance = on_instance
        self._storage = _storage_contexts(storage_sop_classes) if service == "get" else []
        self._lock = threading.Lock()
        self._assoc: Association | None = None
        self._context_id: int | None = None
        self._cancel_requested = False
        self._cancel_sent = False
        self._finished = False

    def cancel(self) -> None:
        """Ask the peer to stop (C-CANCEL); thread-safe, idempotent, harmless once done."""
        with self._lock:
            self._cancel_requested = True
            self._send_cancel_locked()

    def _send_cancel_locked(self) -> None:
        assoc, context_id = self._assoc, self._context_id
        if self._cancel_sent or self._finished or assoc is None or context_id is None:
            return
        if assoc.is_established:
            self._cancel_sent = True
            assoc.send_c_cancel(1, context_id)

    def _open(self) -> Association:
        contexts = [build_context(self.sop_class, list(SERVICE_TRANSFER_SYNTAXES))]
        roles: list[Any] = []
        handlers: list[tuple[Any, Callable[..., Any]]] = []
        if self.service == "get":
            assert self._on_instance is not None
            syntaxes = list(STORAGE_TRANSFER_SYNTAXES)
            contexts += [build_context(uid, syntaxes) for uid in self._storage]
            roles = [build_role(uid, scp_role=True) for uid in self._storage]
            handlers = [(evt.EVT_C_STORE, storage_handler(self._on_instance))]
        return _associate(self.peer, contexts, ext_neg=roles, handlers=handlers)

    def _responses(self, assoc: Association) -> Iterator[tuple[Dataset, Dataset | None]]:
        if self.service == "find":
            return assoc.send_c_find(self.identifier, self.sop_class, priority=_MEDIUM)
        if self.service == "move":
            return assoc.send_c_move(
                self.identifier, self._move_destination, self.sop_class, priority=_MEDIUM
            )
        return assoc.send_c_get(self.identifier, self.sop_class, priority=_MEDIUM)

    def run(self) -> QueryOutcome | RetrieveOutcome:
        """Associate, send the request, wait for the final response, release.

        Returns
        -------
        QueryOutcome or RetrieveOutcome
            For C-FIND and for C-MOVE/C-GET respectively.

        Raises
        ------
        AssociationFailed
            No association, no acceptable presentation context, or the peer stopped
            answering (DIMSE timeout or abort) before the final response.
        """
        assoc = self._open()
        try:
            context_id = _accepted(assoc, self.sop_class, self.peer)
            with self._lock:
                self._assoc, self._context_id = assoc, context_id
            return self._exchange(assoc)
        finally:
            with self._lock:
                self._finished = True
            if assoc.is_established:
                assoc.release()

    def _exchange(self, assoc: Association) -> QueryOutcome | RetrieveOutcome:
        matches = 0
        last: Dataset | None = None
        with self._lock:
            # A cancel that came while we associated goes out right after the request.
            responses = self._responses(assoc)
            if self._cancel_requested:
                self._send_cancel_locked()
        for status, identifier in responses:
            if "Status" not in status:
                raise AssociationFailed(
                    f"no C-{self.service.upper()} response from {self.peer} (timed out or aborted)"
                )
            code = int(status.Status)
            if code in (Status.PENDING, Status.PENDING_OPTIONAL_KEYS_UNSUPPORTED):
                last = status
                if self.service == "find" and identifier is not None:
                    matches += 1
                    if not self._cancel_requested and self._on_match is not None:
                        keep = self._on_match(identifier)
                        if not keep:
                            self.cancel()
                continue
            return self._outcome(status, identifier, matches, last)
        raise AssociationFailed(f"C-{self.service.upper()} ended without a final response")

    def _outcome(
        self, final: Dataset, identifier: Dataset | None, matches: int, last: Dataset | None
    ) -> QueryOutcome | RetrieveOutcome:
        code = int(final.Status)
        comment = str(final.get("ErrorComment", "") or "")
        if self.service == "find":
            return QueryOutcome(code, comment, matches, self._cancel_sent)

        def count(keyword: str) -> int:
            for source in (final, last):
                if source is not None and keyword in source:
                    return int(source.get(keyword) or 0)
            return 0

        failed_uids: tuple[str, ...] = ()
        if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
            value = identifier.FailedSOPInstanceUIDList
            failed_uids = (str(value),) if isinstance(value, str) else tuple(map(str, value))
        return RetrieveOutcome(
            status=code,
            error_comment=comment,
            completed=count("NumberOfCompletedSuboperations"),
            failed=count("NumberOfFailedSuboperations"),
            warning=count("NumberOfWarningSuboperations"),
            remaining=count("NumberOfRemainingSuboperations") if code == Status.CANCEL else 0,
            failed_sop_instances=failed_uids,
            cancelled=self._cancel_sent,
        )


class StorageSCP:
    """Our Storage SCP while a C-MOVE runs: accepts every storage SOP class we know.

    A pynetdicom association server on its own threads, bound at :meth:`start`; every
    C-STORE sub-operation goes to ``on_instance`` on the association's thread (an exception
    there becomes the C-STORE status, PS3.4 B.2.3).  Any calling and called AE title is
    accepted: the peer was told ours as the move destination.

    Parameters
    ----------
    ae_title : str
        Our AE title (the move destination).
    host : str
        Address to listen on: ``"0.0.0.0"`` for every interface, ``"127.0.0.1"`` for local.
    port : int
        TCP port; 0 lets the kernel choose (then see :attr:`port`).
    on_instance : InstanceHandler
        Takes each received instance.
    acse_timeout, dimse_timeout : float, optional
        Seconds per phase of the peer's associations.
    max_pdu : int, optional
        Largest PDU we accept.
    """

    def __init__(
        self,
        ae_title: str,
        host: str,
        port: int,
        on_instance: InstanceHandler,
        *,
        acse_timeout: float = 30.0,
        dimse_timeout: float = 60.0,
        max_pdu: int = 262144,
    ) -> None:
        self.ae_title = ae_title
        self.host = host
        self._port = port
        self._on_instance = on_instance
        self._acse_timeout = acse_timeout
        self._dimse_timeout = dimse_timeout
        self._max_pdu = max_pdu
        self._server: Any = None

    @property
    def port(self) -> int:
        """The port it listens on (the kernel's choice if 0 was asked for)."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and start serving.

        Raises
        ------
        OSError
            The address cannot be bound (e.g. the port is in use).
        """
        ae = AE(ae_title=self.ae_title)
        ae.implementation_class_uid = DEFAULT_IMPLEMENTATION_CLASS_UID
        ae.acse_timeout = self._acse_timeout
        ae.dimse_timeout = self._dimse_timeout
        ae.network_timeout = max(self._acse_timeout, self._dimse_timeout)
        ae.maximum_pdu_size = self._max_pdu
        syntaxes = list(STORAGE_TRANSFER_SYNTAXES)
        for uid in STORAGE_SOP_CLASSES:
            ae.add_supported_context(uid, syntaxes)
        ae.add_supported_context(VERIFICATION, list(SERVICE_TRANSFER_SYNTAXES))
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, nodelay),
            (evt.EVT_C_STORE, storage_handler(self._on_instance)),
        ]
        self._server = ae.start_server((self.host, self._port), block=False, evt_handlers=handlers)

    def stop(self, grace: float = 5.0) -> None:
        """Stop listening; give the peer's associations ``grace`` seconds to end, then abort.

        Safe to call twice or before :meth:`start`.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        deadline = time.monotonic() + grace
        for assoc in server.active_associations:
            assoc.join(max(0.0, deadline - time.monotonic()))
            if assoc.is_alive():
                assoc.abort()

    def __enter__(self) -> StorageSCP:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
