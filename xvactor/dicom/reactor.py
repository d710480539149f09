"""Event-driven reactors for pynetdicom 3.0 acceptor associations.

pynetdicom runs two polling loops per association: the DUL reactor sleeps 1 ms whenever it
finds nothing to do, and the association reactor sleeps 1 ms on every turn.  Every DIMSE
message therefore waits on several polls, and each idle association burns CPU.  Its socket
``recv`` also reads in 4 KiB slices (32 system calls and copies per 128 KiB PDU).

``install(assoc)`` replaces, on one association before its threads start, the two loops
and ``recv`` with equivalents that block until something happens:

* the DUL waits in ``select`` on its socket and a wake-up pipe that ``send_pdu``,
  ``kill_dul`` and ``stop_dul`` write to;
* the association reactor waits on an event set whenever a DIMSE message is completed,
  an ACSE primitive is queued for it, or the DUL stops;
* ``recv`` reads straight into one buffer, grown as the PDU's bytes arrive;
* once the association is established (Sta6, plain TCP), a P-DATA-TF PDU is read and split
  into its presentation data values here (PS3.8 9.3.5) and handed to DIMSE as the P-DATA
  indication that pynetdicom's action DT-2 would deliver: without building pynetdicom's PDU
  and item objects, without the state machine's event queue, and without copying the
  values (they are views of the one receive buffer).  Every other PDU, and every PDU in
  another state, takes pynetdicom's own path.  The notification events EVT_PDU_RECV and
  EVT_DATA_RECV are not triggered for these PDUs (nothing here binds them).

Both loops keep the stock loop bodies (same checks, same order, same state machine), so
behaviour is pynetdicom's; only the waiting differs.  Timers (ARTIM, network idle) are
checked at least every ``_MAX_WAIT`` seconds.  This depends on pynetdicom 3.0 internals
(``DULServiceProvider.run_reactor``, ``Association._run_reactor``), which is why the
dependency is pinned below 3.1 and the DCMTK integration tests run through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import ssl
import struct
import threading
import types
from collections.abc import Callable
from typing import Any, cast

from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

__all__ = ["install", "on_finished"]

LOGGER = logging.getLogger("xvactor.reactor")

_MAX_WAIT = 0.5
"""Longest wait before timers are checked again (seconds)."""


class _Wakeup:
    """A self-pipe: other threads ``set()`` it to interrupt the DUL's ``select``."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._closed = False
        self._pending = False
        """A byte is in the pipe that the reader has not drained yet."""
        # Guards against writing to a closed descriptor whose number was reused.
        self._lock = threading.Lock()

    def set(self) -> None:
        with self._lock:
            if self._closed or self._pending:
                return  # the reader will wake (or is awake) and look at its queues
            self._pending = True
            # A full pipe raises BlockingIOError: the reader wakes anyway.
            with contextlib.suppress(BlockingIOError):
                os.write(self.write_fd, b"\0")

    def drain(self) -> None:
        # Read, then clear: a set() that skipped its write while the flag was up belongs
        # to a put the reader sees on its next look at its queues (after this drain); one
        # that writes after the read leaves a byte behind, which only costs a spare wakeup.
        # Clearing first would lose a byte written between the clear and the read, and the
        # reader would then sleep with the flag up.
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        with self._lock:
            self._pending = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.read_fd)
                os.close(self.write_fd)


class _SignallingQueue(queue.Queue[Any]):
    """A queue that sets an event on every put, so its consumer need not poll."""

    def __init__(self, signal: threading.Event) -> None:
        super().__init__()
        self._signal = signal

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._signal.set()


_FIRST_READ = 1 << 18
"""Bytes a read buffer starts with; it grows only as the peer's bytes actually arrive, so
a PDU header claiming gigabytes costs nothing until they are sent."""


def _recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """Read ``nr_bytes`` into one buffer (fewer system calls than 4 KiB slices)."""
    sock = self.socket
    if sock is None:
        return bytearray()
    buffer = bytearray(min(nr_bytes, _FIRST_READ))
    received = 0
    while received < nr_bytes:
        if received == len(buffer):
            buffer.extend(bytes(min(len(buffer), nr_bytes - received)))
        with memoryview(buffer) as view:
            count = sock.recv_into(view[received:], len(buffer) - received)
        if count == 0:
            return buffer[:received]
        received += count
    return buffer


def _wait_for_io(dul: DULServiceProvider, wakeup: _Wakeup) -> None:
    """Block until the socket is readable, another thread wakes us, or a timer is due."""
    transport = dul.socket
    raw = transport.socket if transport is not None and transport._is_connected else None
    if isinstance(raw, ssl.SSLSocket) and raw.pending():
        return
    timeout = _MAX_WAIT
    if dul.artim_timer._start_time is not None and dul.artim_timer._end_time is None:
        timeout = max(0.0, min(timeout, dul.artim_timer.remaining))
    readers: list[Any] = [wakeup.read_fd]
    if raw is not None:
        readers.append(raw)
    try:
        select.select(readers, [], [], timeout)
    except (OSError, ValueError):
        return  # the socket closed under us: the loop's own checks report it
    wakeup.drain()


def _dul_reactor(dul: DULServiceProvider, wakeup: _Wakeup, signal: threading.Event) -> None:
    """``DULServiceProvider.run_reactor`` with ``select`` instead of sleeps."""
    try:
        dul._idle_timer.start()
        while True:
            if not dul.assoc._dul_ready.is_set():
                dul.assoc._dul_ready.set()
            if dul._kill_thread:
                break
            if dul.artim_timer.expired:
                dul.event_queue.put("Evt18")
            try:
                if dul._process_recv_primitive():
                    pass
                elif _transport_event(dul):
                    dul._idle_timer.restart()
            except Exception:
                LOGGER.exception("exception in the DUL reactor, aborting association")
                _abort_hard(dul)
                return
            try:
                event = dul.event_queue.get(block=False)
            except queue.Empty:
                _wait_for_io(dul, wakeup)
                continue
            dul.state_machine.do_action(event)
    finally:
        signal.set()


_P_DATA_TF = 0x04
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def _transport_event(dul: DULServiceProvider) -> bool:
    """``DULServiceProvider._is_transport_event`` with P-DATA-TF read here in Sta6."""
    transport = dul.socket
    raw = transport.socket if transport is not None and transport._is_connected else None
    if raw is None or isinstance(raw, ssl.SSLSocket) or dul.state_machine.current_state != "Sta6":
        return dul._is_transport_event()
    try:
        head = raw.recv(6, _PEEK)
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read
    except OSError:
        return dul._is_transport_event()  # reports the broken connection its own way
    if len(head) < 6 or head[0] != _P_DATA_TF:
        return dul._is_transport_event()  # another PDU, a partial header, or EOF
    length: int = struct.unpack(">L", head[2:6])[0]
    try:
        pdu = _recv(cast(AssociationSocket, transport), 6 + length)
    except OSError:  # TimeoutError included
        pdu = bytearray()
    if len(pdu) != 6 + length:
        LOGGER.error("Connection closed before the entire PDU was received")
        dul.event_queue.put("Evt17")  # as pynetdicom's READ_PDU_EXC_D/E
        return True
    values = _presentation_data_values(pdu)
    if values is None:
        LOGGER.error("Unable to decode the received P-DATA-TF PDU")
        dul.event_queue.put("Evt19")  # invalid PDU: A-ABORT, as pynetdicom's READ_PDU_EXC_F
        return True
    indication = P_DATA()
    indication._presentation_data_value_list = values  # type: ignore[assignment]
    dul.assoc.dimse.receive_primitive(indication)  # what DT-2 does (Sta6 + Evt10)
    return True


def _presentation_data_values(pdu: bytearray) -> list[tuple[int, memoryview]] | None:
    """Split a P-DATA-TF PDU into ``(context ID, control header + fragment)`` views.

    PS3.8 9.3.5: each item is a 4-byte Item-length, a 1-byte Presentation-context-ID and
    the Presentation-data-value (the message control header byte, then the fragment).
    ``None`` when the items do not add up to the PDU.
    """
    view = memoryview(pdu)
    values: list[tuple[int, memoryview]] = []
    offset, end = 6, len(pdu)
    while offset < end:
        if end - offset < 6:
            return None
        item_length: int = struct.unpack_from(">L", pdu, offset)[0]
        if item_length < 2 or offset + 4 + item_length > end:
            return None
        values.append((pdu[offset + 4], view[offset + 5 : offset + 4 + item_length]))
        offset += 4 + item_length
    return values if values else None


def _abort_hard(dul: DULServiceProvider) -> None:
    """What the stock reactor does on an exception: A-ABORT, then stop both loops."""
    abort_pdu = A_ABORT_RQ()
    abort_pdu.source = 0x02
    abort_pdu.reason_diagnostic = 0x00
    if dul.socket is not None:
        dul.socket.send(abort_pdu.encode())
    dul.assoc.is_aborted = True
    dul.assoc.is_established = False
    dul.assoc._kill = True
    dul._kill_thread = True


def _association_step(assoc: Association) -> bool | None:
    """One turn of the stock acceptor reactor; ``None`` when the association ended."""
    assoc._is_paused = True
    assoc._reactor_checkpoint.wait()
    assoc._is_paused = False
    context_id, msg = assoc.dimse.get_msg(block=False)
    if msg and context_id is not None:
        assoc._serve_request(msg, context_id)
        return True
    if assoc.is_established and assoc.acse.is_release_requested():
        assoc.acse.send_release(is_response=True)
        assoc.is_released = True
        assoc.is_established = False
        _trigger(assoc, "EVT_RELEASED")
        assoc.kill()
        return None
    if assoc.acse.is_aborted():
        assoc.dul.receive_pdu(wait=False)
        assoc.is_aborted = True
        assoc.is_established = False
        _trigger(assoc, "EVT_ABORTED")
        assoc.kill()
        return None
    if not assoc.dul.is_alive():
        assoc.kill()
        return None
    if assoc.dul.idle_timer_expired():
        LOGGER.error("Network timeout reached")
        assoc.abort()
        assoc.kill()
        return None
    return False


def _trigger(assoc: Association, name: str) -> None:
    from pynetdicom import evt  # noqa: PLC0415 - keeps the module's surface small

    evt.trigger(assoc, getattr(evt, name), {})


def _association_reactor(assoc: Association, signal: threading.Event) -> None:
    """``Association._run_reactor`` that waits on ``signal`` instead of sleeping."""
    assoc._is_paused = False
    while not assoc._kill:
        signal.clear()
        served = _association_step(assoc)
        if served is None:
            return
        if not served:
            signal.wait(_MAX_WAIT)


def on_finished(assoc: Association, callback: Callable[[Association], None]) -> None:
    """Run ``callback`` on the association's thread when it ends.

    By then every outcome event (released, aborted, rejected) has fired and its DUL has
    stopped, whichever thread triggered them.  Call before the association starts.
    """
    stock_run = assoc.run

    def run_association() -> None:
        try:
            stock_run()
        finally:
            callback(assoc)

    assoc.run = run_association  # type: ignore[method-assign]


def install(assoc: Association) -> None:
    """Make ``assoc`` (an acceptor whose threads have not started) event driven."""
    dul = assoc.dul
    wakeup = _Wakeup()
    signal = threading.Event()
    dul.to_user_queue = _SignallingQueue(signal)
    assoc.dimse.msg_queue = _SignallingQueue(signal)

    stock_send_pdu = dul.send_pdu
    stock_kill_dul = dul.kill_dul
    stock_kill = assoc.kill

    def send_pdu(primitive: Any) -> None:
        stock_send_pdu(primitive)
        wakeup.set()

    def kill_dul() -> None:
        stock_kill_dul()
        wakeup.set()

    def stop_dul() -> bool:
        if dul.state_machine.current_state != "Sta1":
            return False
        dul._kill_thread = True
        wakeup.set()
        if threading.current_thread() is not dul:
            dul.join()
        return True

    def kill() -> None:
        signal.set()
        stock_kill()

    def run() -> None:
        try:
            _dul_reactor(dul, wakeup, signal)
        finally:
            wakeup.close()

    dul.send_pdu = send_pdu  # type: ignore[method-assign]
    dul.kill_dul = kill_dul  # type: ignore[method-assign]
    dul.stop_dul = stop_dul  # type: ignore[method-assign]
    dul.run = run  # type: ignore[method-assign]
    assoc.kill = kill  # type: ignore[method-assign]
    assoc._run_reactor = types.MethodType(  # type: ignore[method-assign]
        lambda self: _association_reactor(self, signal), assoc
    )
    if dul.socket is not None:
        dul.socket.recv = types.MethodType(_recv, dul.socket)  # type: ignore[method-assign]
