"""One requestor association on a blocking socket: the bench's hot path.

:meth:`Association.open` connects (TCP_NODELAY, PS3.8 Section 9.1.1), sends the
A-ASSOCIATE-RQ and waits for the answer; :meth:`Association.request` sends one DIMSE
request (command PDV, then the data set in PDVs no larger than the peer's Maximum Length)
with ``sendmsg`` straight from the caller's buffer, and reads the responses.  Nothing
polls: every wait is a blocking ``recv`` bounded by ``SO_RCVTIMEO``.

Failures raise :class:`WireError` with a ``kind`` the report counts errors by.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xvactor.bench import pdu
from xvactor.bench.dimse import Response, decode_response

__all__ = ["Association", "Target", "WireError", "timed_open"]

_IMPLEMENTATION_CLASS_UID = "1.2.840.114384.2"
_IMPLEMENTATION_VERSION = "XVACTOR_BENCH"
_MAX_IOV = 64
_FALLBACK_PDU = 131072
"""Fragment size when the peer sets no limit (DCMTK 3.6.7 refuses larger PDUs)."""


class WireError(Exception):
    """An association could not be made or was lost; ``kind`` names the failure."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Target:
    """A peer to load: address, AE titles, our Maximum Length Received, timeouts."""

    host: str
    port: int
    called_ae_title: str
    calling_ae_title: str = "XVBENCH"
    max_pdu: int = 131072
    timeout: float = 30.0
    label: str = ""

    def __str__(self) -> str:
        return self.label or f"{self.called_ae_title}@{self.host}:{self.port}"


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def _send_all(sock: socket.socket, buffers: list[memoryview]) -> None:
    """``sendmsg`` the buffers in order, resuming after partial writes."""
    while buffers:
        sent = sock.sendmsg(buffers[:_MAX_IOV])
        while sent:
            first = buffers[0]
            if sent >= len(first):
                sent -= len(first)
                buffers.pop(0)
            else:
                buffers[0] = first[sent:]
                sent = 0
        while buffers and not len(buffers[0]):
            buffers.pop(0)


class Association:
    """An established association; not thread-safe (one per load thread)."""

    def __init__(self, sock: socket.socket, target: Target, accept: pdu.AssociateAccept) -> None:
        self._sock = sock
        self.target = target
        self.accepted = accept.accepted
        peer_max = accept.max_pdu or _FALLBACK_PDU
        self._fragment = max(peer_max - 6, 16)
        self._buffer = bytearray()
        self._message_id = 0
        self.open = True

    @classmethod
    def open_to(cls, target: Target, contexts: Sequence[pdu.PresentationContext]) -> Association:
        """Connect and associate, proposing ``contexts``.

        Raises
        ------
        WireError
            ``refused``, ``connect``, ``timeout``, ``rejected``, ``aborted``, ``protocol``
            or ``no-context`` (the peer accepted none of the contexts).
        """
        try:
            sock = socket.create_connection((target.host, target.port), timeout=target.timeout)
        except ConnectionRefusedError:
            raise WireError("refused", f"connection refused by {target}") from None
        except TimeoutError:
            raise WireError("timeout", f"timed out connecting to {target}") from None
        except OSError as exc:
            raise WireError("connect", f"cannot connect to {target}: {exc}") from None
        try:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(target.timeout))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(target.timeout))
            request = pdu.encode_associate_rq(
                target.called_ae_title,
                target.calling_ae_title,
                contexts,
                max_pdu=target.max_pdu,
                implementation_class_uid=_IMPLEMENTATION_CLASS_UID,
                implementation_version_name=_IMPLEMENTATION_VERSION,
            )
            probe = cls(sock, target, pdu.AssociateAccept(0, {}, {}))
            probe._send([memoryview(request)])
            accept = _answer(target, *probe._read_pdu())
        except BaseException:
            sock.close()
            raise
        assoc = cls(sock, target, accept)
        if not accept.accepted:
            assoc.abort()
            why = ", ".join(sorted(set(accept.refused.values()))) or "none accepted"
            raise WireError("no-context", f"{target} accepted no presentation context ({why})")
        return assoc

    def _send(self, buffers: list[memoryview]) -> None:
        try:
            _send_all(self._sock, buffers)
        except (BlockingIOError, TimeoutError):
            self._close()
            raise WireError("timeout", f"timed out sending to {self.target}") from None
        except OSError as exc:
            self._close()
            raise WireError("reset", f"connection to {self.target} lost: {exc}") from None

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            try:
                chunk = self._sock.recv(max(65536, size - len(self._buffer)))
            except (BlockingIOError, TimeoutError):
                self._close()
                raise WireError("timeout", f"no answer from {self.target}") from None
            except OSError as exc:
                self._close()
                raise WireError("reset", f"connection to {self.target} lost: {exc}") from None
            if not chunk:
                self._close()
                raise WireError("closed", f"{self.target} closed the connection")
            self._buffer += chunk

    def _read_pdu(self) -> tuple[int, bytes]:
        self._fill(6)
        pdu_type, _, length = struct.unpack_from(">BBI", self._buffer)
        self._fill(6 + length)
        body = bytes(self._buffer[6 : 6 + length])
        del self._buffer[: 6 + length]
        if pdu_type == pdu.A_ABORT:
            self._close()
            raise WireError("aborted", f"association aborted by {self.target}")
        return pdu_type, body

    def _read_command(self) -> tuple[bytes, bool]:
        """Read the command set of the next message.

        Returns the command set and whether the data set also ended in the PDU that ended
        the command (a P-DATA-TF may carry both, PS3.8 Section 9.3.5).
        """
        command = bytearray()
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type != pdu.P_DATA_TF:
                self.abort()
                raise WireError("protocol", f"unexpected PDU type {pdu_type:#04x}")
            done = data_done = False
            for _, control, fragment in pdu.iter_pdvs(body):
                if control & 1:
                    if done:
                        raise WireError("protocol", "command fragment after the command ended")
                    command += fragment
                    done = bool(control & 2)
                elif not done:
                    raise WireError("protocol", "data set fragment before the command ended")
                else:
                    data_done = data_done or bool(control & 2)
            if done:
                return bytes(command), data_done

    def _skip_data_set(self) -> None:
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type != pdu.P_DATA_TF:
                self.abort()
                raise WireError("protocol", f"unexpected PDU type {pdu_type:#04x}")
            if any(control & 2 for _, control, _ in pdu.iter_pdvs(body)):
                return

    def next_message_id(self) -> int:
        """A Message ID (0000,0110) unique on this association (wraps at 65535)."""
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def request(
        self,
        context_id: int,
        command: bytes,
        data: memoryview | None = None,
        on_response: Callable[[Response], bool] | None = None,
    ) -> Response:
        """Send one request and return its final response.

        ``on_response`` sees every response first; while it returns ``True`` (a pending
        C-FIND response, say) the next one is awaited.
        """
        headers: list[memoryview] = [
            memoryview(pdu.pdv_headers(len(command), context_id, 0x03)),
            memoryview(command),
        ]
        if data is not None:
            size = self._fragment
            total = len(data)
            for start in range(0, max(total, 1), size):
                piece = data[start : start + size]
                last = 0x02 if start + size >= total else 0x00
                headers.append(memoryview(pdu.pdv_headers(len(piece), context_id, last)))
                headers.append(piece)
        self._send(headers)
        while True:
            try:
                command, data_done = self._read_command()
                response = decode_response(command)
                if response.has_data_set and not data_done:
                    self._skip_data_set()
            except ValueError as exc:
                self.abort()
                raise WireError("protocol", f"bad response from {self.target}: {exc}") from None
            if on_response is None or not on_response(response):
                return response

    def release(self) -> None:
        """A-RELEASE (PS3.8 Section 7.2); aborts if the peer answers anything else."""
        if not self.open:
            return
        try:
            self._send([memoryview(pdu.RELEASE_RQ)])
            pdu_type, _ = self._read_pdu()
        except WireError:
            return
        if pdu_type != pdu.RELEASE_RP_TYPE:
            self.abort()
        self._close()

    def abort(self) -> None:
        """A-ABORT and close."""
        if self.open:
            with contextlib.suppress(OSError):
                self._sock.sendall(pdu.ABORT)
        self._close()

    def _close(self) -> None:
        self.open = False
        self._sock.close()


def _answer(target: Target, pdu_type: int, body: bytes) -> pdu.AssociateAccept:
    """The A-ASSOCIATE-AC's content, or the rejection or oddity as a :class:`WireError`."""
    if pdu_type == pdu.ASSOCIATE_RJ:
        raise WireError("rejected", f"{pdu.decode_associate_rj(body)} by {target}")
    if pdu_type != pdu.ASSOCIATE_AC:
        raise WireError("protocol", f"{target} answered PDU type {pdu_type:#04x}")
    try:
        return pdu.decode_associate_ac(body)
    except ValueError as exc:
        raise WireError("protocol", f"bad A-ASSOCIATE-AC from {target}: {exc}") from None


def timed_open(
    target: Target, contexts: Sequence[pdu.PresentationContext]
) -> tuple[Association, float]:
    """:meth:`Association.open_to` and the seconds it took (association set-up latency)."""
    started = time.perf_counter()
    assoc = Association.open_to(target, contexts)
    return assoc, time.perf_counter() - started
