"""The inbound boundary: pynetdicom's AE, its servers, and thin event handlers.

pynetdicom runs each association on its own thread.  Handlers here only translate, and
whatever comes back, value or exception, becomes a status through ``status_for``:

* a C-STORE whose dataset was spooled as received is filed by ``Filing.store`` right on
  the association's thread, which the peer keeps waiting for this answer anyway (PS3.7
  D.3.3.3).  A hop through the event loop and back costs two thread wake-ups, about
  0.4 ms measured in place on this 2-core VM: a fifth of a small instance's whole budget.
  The catalog writer's queue is bounded, so a saturated catalog blocks this thread, which
  stops reading the socket, which slows the peer through TCP;
* a C-STORE to be de-identified (kept in memory) becomes a ``DeidentifyAndStore``
  message, and the handler waits on the storage actor's bounded mailbox through the loop
  bridge (a full mailbox blocks this thread the same way).
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import ThreadedAssociationServer

from xvactor.actors.dispatcher import ENDED, decode_peer
from xvactor.actors.storage import DeidentifyAndStore, InstanceStored, StorageInbox
from xvactor.config import NodeConfig, Reactor
from xvactor.dicom import access, qr_scp, reactor, spool, tls
from xvactor.dicom.audit import AssociationRecord
from xvactor.dicom.commands import encode_c_store_rsp, pdv_command_last, pdv_headers
from xvactor.dicom.contexts import (
    QR_SOP_CLASSES,
    SERVICE_TRANSFER_SYNTAXES,
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    VERIFICATION,
)
from xvactor.dicom.slots import AssociationSlots
from xvactor.dicom.spool import SpooledStore
from xvactor.dicom.status import CannotUnderstand, OutOfResources, StatusReply, status_for
from xvactor.runtime import ActorRef, LoopBridge
from xvactor.storage.filing import Filing, Received

__all__ = ["SLOTS_DIR", "Channel", "InboundServer", "build_ae", "set_nodelay"]

SLOTS_DIR = ".slots"

LOGGER = logging.getLogger("xvactor.association")


@dataclass(frozen=True)
class Channel:
    """A receive worker's channel from the node's dispatcher, for one listener.

    Connections the node accepted on ``address`` arrive on ``socket``
    (``xvactor.actors.dispatcher``); the worker tells it when each one has ended.
    """

    socket: socket.socket
    address: tuple[str, int]


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle: DIMSE is request/response, delayed ACKs cost 40 ms per message."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def build_ae(config: NodeConfig) -> AE:
    """An AE with the node's identity, limits, timeouts and supported contexts."""
    ae = AE(ae_title=config.ae_title)
    ae.implementation_class_uid = config.implementation_class_uid
    ae.implementation_version_name = config.implementation_version_name
    ae.maximum_pdu_size = config.max_pdu
    # The node-wide limit is enforced exactly by xvactor.dicom.slots; pynetdicom's own
    # per-process count includes association threads still finishing, so it must not bind.
    ae.maximum_associations = 4 * config.max_associations + 16
    ae.connection_timeout = config.timeouts.connect
    ae.acse_timeout = config.timeouts.acse
    ae.dimse_timeout = config.timeouts.dimse
    ae.network_timeout = config.timeouts.idle
    ae.require_called_aet = config.check_called_ae_title
    ae.add_supported_context(VERIFICATION, list(SERVICE_TRANSFER_SYNTAXES))
    for sop_class in QR_SOP_CLASSES:
        ae.add_supported_context(sop_class, list(SERVICE_TRANSFER_SYNTAXES))
    for sop_class in STORAGE_SOP_CLASSES:
        # Accept a C-GET requester's SCP/SCU Role Selection (PS3.7 D.3.3.4): it may take
        # the SCP role so that the C-STOREs of its C-GET run on the same association.
        ae.add_supported_context(
            sop_class, list(STORAGE_TRANSFER_SYNTAXES), scu_role=True, scp_role=True
        )
    # C-GET sub-operations send stored files as they are, without decoding them.
    _config.STORE_SEND_CHUNKED_DATASET = True
    return ae


class InboundServer:
    """Owns the AE's listening servers and translates their events into messages."""

    def __init__(
        self,
        config: NodeConfig,
        bridge: LoopBridge,
        storage: ActorRef[StorageInbox],
        *,
        filing: Filing,
        spool_dir: Path,
        channels: Sequence[Channel] = (),
        query_services: qr_scp.QueryServices | None = None,
    ) -> None:
        self._config = config
        self._query_services = query_services
        self._bridge = bridge
        self._storage = storage
        self._filing = filing
        self._channels = tuple(channels)
        self._ae = build_ae(config)
        self._spool = spool.SpoolSettings(
            directory=spool_dir,
            implementation_class_uid=config.implementation_class_uid,
            implementation_version_name=config.implementation_version_name,
            on_store=self._on_spooled_store,
            in_memory=lambda assoc: self._log_for(assoc).anonymize,
            direct_io=config.direct_io,
            keep_up_to=config.inline_max_kb * 1024,
        )
        self._slots = AssociationSlots(
            config.data_path.resolve() / SLOTS_DIR, config.max_associations
        )
        self._servers: list[ThreadedAssociationServer] = []
        self._logs: dict[int, AssociationRecord] = {}
        self._logs_lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._closing = False

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of each listener (ports resolved when 0 was asked)."""
        return [server.server_address[:2] for server in self._servers]

    def _handlers(self) -> list[evt.EventHandlerType]:
        return [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_ACCEPTED, self._on_outcome("accepted")),
            (evt.EVT_REJECTED, self._on_outcome("rejected")),
            (evt.EVT_RELEASED, self._on_outcome("released")),
            (evt.EVT_ABORTED, self._on_outcome("aborted")),
            (evt.EVT_SOP_EXTENDED, self._on_sop_extended),
            (evt.EVT_C_ECHO, self._on_c_echo),
            (evt.EVT_C_STORE, self._on_c_store),
        ]

    def start(self) -> None:
        """Bind every listener (or serve what the dispatcher's channels bring) and serve.

        Blocking: run on a worker thread.

        Raises
        ------
        TlsConfigError
            A listener's certificate, key or CA cannot be used (one-line message).
        """
        listeners = self._config.listeners
        channels: Sequence[Channel | None] = self._channels or [None] * len(listeners)
        try:
            for listener, channel in zip(listeners, channels, strict=True):
                context = tls.server_context(listener.tls) if listener.tls else None
                self._servers.append(self._serve(listener.host, listener.port, channel, context))
        except BaseException:
            self.stop(drain_timeout=0.0)
            raise

    def _serve(
        self, host: str, port: int, channel: Channel | None, context: ssl.SSLContext | None
    ) -> ThreadedAssociationServer:
        address = channel.address if channel is not None else (host, port)
        server = self._ae.make_server(
            address,
            ssl_context=context,
            evt_handlers=self._handlers(),
            server_class=_server_class(channel, handshake_timeout=self._config.timeouts.acse),
        )
        thread = threading.Thread(target=server.serve_forever, name="AcceptorServer")
        thread.daemon = True
        thread.start()
        self._ae._servers.append(server)
        return server

    def stop(self, *, drain_timeout: float) -> None:
        """Stop accepting, let in-flight C-STOREs finish, then abort what remains.

        Blocking: run on a worker thread.
        """
        self._closing = True
        for server in self._servers:
            server.shutdown()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=drain_timeout)
        for server in self._servers:
            for assoc in list(server.active_associations):
                assoc.abort()
        self._servers.clear()
        self._slots.close()

    # --- event handlers: run on pynetdicom's threads -------------------------------------

    def _log_for(self, assoc: Association) -> AssociationRecord:
        with self._logs_lock:
            key = id(assoc)
            if key not in self._logs:
                address = assoc.requestor.address
                port = assoc.requestor.port
                self._logs[key] = AssociationRecord(address=f"{address}:{port}")
            return self._logs[key]

    def _on_conn_open(self, event: evt.Event) -> None:
        reactor.on_finished(event.assoc, self._on_finished)
        if self._config.reactor is Reactor.EVENT_DRIVEN:
            reactor.install(event.assoc)
        spool.install(event.assoc, self._spool)
        if self._query_services is not None:
            qr_scp.install(event.assoc, self._query_services)
        transport = event.assoc.dul.socket
        if transport is not None and transport.socket is not None:
            set_nodelay(transport.socket)
            server = getattr(event.assoc, "_server", None)
            if isinstance(server, _Dispatched) and server.dispatched:
                request = transport.socket
                # After _on_finished (its slot is free by then), on the same thread.
                reactor.on_finished(event.assoc, lambda _: server.connection_ended(request))
        self._log_for(event.assoc)

    def _on_requested(self, event: evt.Event) -> None:
        """Apply the accepted clients: reject the unknown, narrow the contexts of the rest."""
        assoc = event.assoc
        request = assoc.requestor.primitive  # the A-ASSOCIATE-RQ: negotiation has not run yet
        calling = str(request.calling_ae_title if request is not None else "").strip()
        address = str(assoc.requestor.address)
        log = self._log_for(assoc)
        log.calling = calling
        client = access.match_client(self._config.clients, calling, address)
        if client is None:
            log.reason = "no accepted-client definition matches"
            # PS3.8 7.1.1.9: rejected-permanent (1), service-user (1), calling AE not
            # recognized (3); then as pynetdicom's own rejections do.
            assoc.acse.send_reject(0x01, 0x01, 0x03)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()
            return
        log.slot = self._slots.acquire()
        log.client, log.allowed = client.name, tuple(client.allow)
        if log.slot is None:
            log.reason = f"max_associations ({self._config.max_associations}) reached"
            # PS3.8 7.1.1.9: rejected-transient (2), service-provider presentation (3),
            # local-limit-exceeded (2): the peer may try again later.
            assoc.acse.send_reject(0x02, 0x03, 0x02)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()
            return
        log.anonymize = self._config.anonymize if client.anonymize is None else client.anonymize
        assoc.acceptor.supported_contexts = access.permitted_contexts(
            assoc.acceptor.supported_contexts, client.allow
        )

    def _on_outcome(self, outcome: str) -> Callable[[evt.Event], None]:
        def handler(event: evt.Event) -> None:
            log = self._log_for(event.assoc)
            # pynetdicom fills these during negotiation, which a rejection may precede.
            log.calling = str(event.assoc.requestor.ae_title).strip() or log.calling
            log.called = str(event.assoc.acceptor.ae_title).strip() or log.called
            if outcome == "aborted" and log.outcome in ("released", "rejected"):
                return
            log.outcome = outcome

        return handler

    def _on_conn_close(self, event: evt.Event) -> None:
        _discard_partial_dataset(event.assoc)

    def _on_finished(self, assoc: Association) -> None:
        """The association's thread ends: free its slot, log what it did, once."""
        with self._logs_lock:
            log = self._logs.pop(id(assoc), None)
        if log is None:
            return
        if log.slot is not None:
            self._slots.release(log.slot)
        refused = {access.service_of(str(cx.abstract_syntax)) for cx in assoc.rejected_contexts}
        log.refused = tuple(sorted(str(service) for service in refused if service is not None))
        rejection = assoc.acceptor.primitive
        if assoc.is_rejected and not log.reason and rejection is not None:
            log.reason = str(rejection.reason_str)
        LOGGER.info(log.line())

    def _on_sop_extended(self, event: evt.Event) -> dict[Any, bytes]:
        requested: dict[Any, bytes] = getattr(event, "app_info", {})
        return qr_scp.extended_negotiation(requested)

    def _on_c_echo(self, event: evt.Event) -> int:
        self._log_for(event.assoc).count_echo()
        return 0x0000

    def _on_c_store(self, event: evt.Event) -> Dataset:
        """pynetdicom's Storage SCP path: a C-STORE-RQ ``decode_c_store_rq`` did not take.

        Its command set is unusual (a UID missing or not ASCII, say), so it is refused
        rather than stored under UIDs the node could not read.
        """
        self._log_for(event.assoc).count_store(False)
        reply = status_for(CannotUnderstand("C-STORE-RQ command set not understood"))
        return _status_dataset(reply)

    def _on_spooled_store(self, assoc: Association, request: SpooledStore) -> None:
        """The C-STORE fast path, on the DUL thread: store, then answer (PS3.7 9.3.1)."""
        with self._in_flight_request():  # a draining stop waits until the answer is queued
            idle_timer = assoc.dul._idle_timer
            idle_timer.stop()  # a slow disk is not an idle peer
            try:
                try:
                    reply = self._store(assoc, request)
                finally:
                    idle_timer.restart()
                self._answer(assoc, request, reply)
            finally:
                # After the answer (the peer need not wait for it): the spool name only.
                # The instance, if filed, has its own name; a crash before this leaves
                # the spool file to be cleared at the next start.
                if request.path is not None and request.on_disk:
                    request.path.unlink(missing_ok=True)

    @contextmanager
    def _in_flight_request(self) -> Iterator[None]:
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _answer(self, assoc: Association, request: SpooledStore, reply: StatusReply) -> None:
        """Send the C-STORE-RSP (PS3.7 9.3.1.2).

        On the DUL thread of an established association (where the fast path runs), the
        P-DATA-TF is written to the socket directly, as pynetdicom's action DT-1 would
        after a trip through its queues: that thread is the only one that writes to this
        socket.  Anywhere else it is queued to the DUL, which sends it in order.
        """
        command = encode_c_store_rsp(
            message_id=request.message_id,
            sop_class_uid=request.sop_class_uid,
            sop_instance_uid=request.sop_instance_uid,
            status=reply.status,
            error_comment=reply.error_comment,
        )
        dul = assoc.dul
        transport = dul.socket
        raw = transport.socket if transport is not None else None
        if (
            raw is not None
            and threading.current_thread() is dul
            and dul.state_machine.current_state == "Sta6"
            and dul.to_provider_queue.empty()
        ):
            try:
                raw.sendall(pdv_headers(len(command), request.context_id, 0x03) + command)
            except OSError as exc:  # the DUL sees the closed connection on its next read
                LOGGER.info("C-STORE-RSP not sent: %s", exc)
            return
        response = P_DATA()
        # pynetdicom checks for [id, pdv] lists at run time (its annotation says tuples).
        pdv = pdv_command_last(command)
        response.presentation_data_value_list = [[request.context_id, pdv]]  # type: ignore[list-item]
        dul.send_pdu(response)

    def _store(self, assoc: Association, request: SpooledStore) -> StatusReply:
        """Store one spooled instance; every outcome becomes a status here."""
        log = self._log_for(assoc)
        with self._in_flight_request():
            reply = self._ask_storage(assoc, request)
        log.count_store(reply.status == 0x0000 or reply.status >> 12 == 0xB)
        if reply.status != 0x0000:
            LOGGER.warning(
                "C-STORE %s from %s: 0x%04X %s",
                "(de-identified)" if log.anonymize else request.sop_instance_uid,
                log.calling,
                reply.status,
                reply.error_comment or "",
            )
        return reply

    def _ask_storage(self, assoc: Association, request: SpooledStore) -> StatusReply:
        if self._closing:
            return status_for(OutOfResources("Node is shutting down, retry later"))
        if request.error is not None:
            return status_for(request.error)
        message: StorageInbox
        if request.data is not None:
            message = DeidentifyAndStore(
                dataset=request.data,
                affected_sop_class_uid=request.sop_class_uid,
                affected_sop_instance_uid=request.sop_instance_uid,
                transfer_syntax_uid=request.transfer_syntax_uid,
                calling_ae_title=str(assoc.requestor.ae_title),
            )
            return self._ask(message)
        if request.path is None:
            return status_for(CannotUnderstand("C-STORE-RQ without a dataset"))
        received = Received(
            source=request.path,
            affected_sop_class_uid=request.sop_class_uid,
            affected_sop_instance_uid=request.sop_instance_uid,
            transfer_syntax_uid=request.transfer_syntax_uid,
            calling_ae_title=str(assoc.requestor.ae_title),
            head=request.head,
            size=request.size,
            on_disk=request.on_disk,
        )
        try:
            self._filing.store(received)
        except Exception as exc:
            LOGGER.debug("C-STORE failed", exc_info=True)
            return status_for(exc)
        return status_for(None)

    def _ask(self, message: StorageInbox) -> StatusReply:
        try:
            self._bridge.ask(
                self._storage, message, expect=InstanceStored, timeout=self._config.timeouts.store
            )
        except Exception as exc:
            LOGGER.debug("C-STORE failed", exc_info=True)
            return status_for(exc)
        return status_for(None)


class _Dispatched:
    """A server that may take its connections from the node's dispatcher."""

    dispatched = False
    """It does (a receive worker's)."""

    def connection_ended(self, request: object) -> None:
        """Tell the dispatcher, once, that a connection it handed over has ended."""


def _server_class(
    channel: Channel | None, *, handshake_timeout: float
) -> type[ThreadedAssociationServer]:
    """pynetdicom's threaded server, changed where a node needs it.

    * With ``channel`` (a receive worker), it binds nothing: its "listening socket" is the
      channel on which the node's process hands it accepted connections
      (``xvactor.actors.dispatcher``), and it answers there when each one has ended.
    * With TLS, the handshake runs on the connection's own thread under
      ``handshake_timeout``: pynetdicom handshakes inside the accept loop, where one silent
      peer would stop the listener for everybody.  A failed handshake (a plain-TCP peer, a
      missing or untrusted client certificate) is one log line; the listener goes on.
    """

    handed: set[object] = set()
    """Connections the dispatcher handed over whose end it has not been told of."""
    handed_lock = threading.Lock()

    class _NodeServer(ThreadedAssociationServer, _Dispatched):
        dispatched = channel is not None

        def server_bind(self) -> None:
            if channel is None:
                super().server_bind()
                return
            if self.socket is not None:
                self.socket.close()
            channel.socket.setblocking(False)
            self.socket = channel.socket
            self.server_address = channel.address

        def server_activate(self) -> None:
            if channel is None:
                super().server_activate()

        def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
            own = cast(socket.socket, self.socket)
            if channel is None:
                client, address = own.accept()
            else:
                client, address = self._handed_over(own)
            if self.ssl_context is not None:
                client = self.ssl_context.wrap_socket(
                    client, server_side=True, do_handshake_on_connect=False
                )
            if channel is not None:
                with handed_lock:
                    handed.add(client)
            return client, address

        def _handed_over(self, own: socket.socket) -> tuple[socket.socket, tuple[str, int]]:
            message, fds, _, _ = socket.recv_fds(own, 512, 2)
            clients = [socket.socket(fileno=fd) for fd in fds]
            if not message and not clients:
                # The node's process is gone (its death signal stops this worker): stop
                # this loop rather than wake on the closed channel again and again.
                self._BaseServer__shutdown_request = True
                raise OSError("the node's dispatcher closed the channel")
            if len(clients) != 1:
                for client in clients:
                    client.close()
                raise OSError(f"the dispatcher sent {len(clients)} connections in one message")
            try:
                return clients[0], decode_peer(message)
            except ValueError:
                clients[0].close()
                raise OSError("the dispatcher sent no peer address") from None

        def connection_ended(self, request: object) -> None:
            with handed_lock:
                ended = request in handed
                handed.discard(request)
            if ended and channel is not None:
                with suppress(OSError):
                    channel.socket.send(ENDED)

        def shutdown_request(self, request: Any) -> None:
            # pynetdicom calls this at the end of some associations, and socketserver for
            # a connection that never became one (a failed TLS handshake): either way the
            # connection is over; connection_ended counts it once.
            super().shutdown_request(request)
            self.connection_ended(request)

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.settimeout(handshake_timeout)
                    request.do_handshake()
                    request.settimeout(None)
                except (OSError, ValueError) as exc:
                    LOGGER.warning("TLS handshake with %s failed: %s", client_address[0], exc)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)

        def handle_error(self, request: Any, client_address: Any) -> None:
            exc = sys.exc_info()[1]
            LOGGER.warning("connection from %s failed: %s", client_address, exc)

    return _NodeServer


def _discard_partial_dataset(assoc: Association) -> None:
    """Delete the chunked-receive file of a C-STORE the peer never finished.

    pynetdicom leaves it open and on disk when an association ends mid-dataset.
    """
    message = assoc.dimse.message
    partial = getattr(message, "_data_set_file", None) if message is not None else None
    if partial is None:
        return
    partial.close()
    Path(partial.name).unlink(missing_ok=True)
    LOGGER.info("discarded the partial dataset of an unfinished C-STORE")


def _status_dataset(reply: StatusReply) -> Dataset:
    ds = Dataset()
    ds.Status = reply.status
    if reply.error_comment:
        ds.ErrorComment = reply.error_comment
    return ds
