"""C-ECHO as a user (PS3.7 Section 9.1.5): one association, one echo, a clear outcome.

Blocking; the async client runs it on a worker thread.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pynetdicom import AE, evt

from xvactor.config import DEFAULT_IMPLEMENTATION_CLASS_UID
from xvactor.dicom.contexts import SERVICE_TRANSFER_SYNTAXES, VERIFICATION

__all__ = ["EchoOutcome", "echo"]


@dataclass(frozen=True)
class EchoOutcome:
    """``ok`` or a one-line reason."""

    ok: bool
    reason: str = ""
    status: int | None = None


def _nodelay(event: evt.Event) -> None:
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _connect_failure(host: str, port: int, timeout: float) -> str:
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


def echo(
    host: str,
    port: int,
    *,
    calling_ae_title: str = "XVACTOR",
    called_ae_title: str = "ANY-SCP",
    timeout: float = 10.0,
    max_pdu: int = 262144,
) -> EchoOutcome:
    """Associate, send one C-ECHO, release.  Never raises for network outcomes."""
    ae = AE(ae_title=calling_ae_title)
    ae.implementation_class_uid = DEFAULT_IMPLEMENTATION_CLASS_UID
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.maximum_pdu_size = max_pdu
    ae.add_requested_context(VERIFICATION, list(SERVICE_TRANSFER_SYNTAXES))
    assoc = ae.associate(
        host, port, ae_title=called_ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)]
    )
    rj = assoc.acceptor.primitive
    if assoc.is_rejected and rj is not None:
        return EchoOutcome(
            ok=False,
            reason=(
                f"association rejected ({rj.result_str}, source: {rj.source_str}): {rj.reason_str}"
            ),
        )
    if not assoc.is_established:
        if assoc.acceptor.primitive is None:  # no A-ASSOCIATE response at all
            return EchoOutcome(ok=False, reason=_connect_failure(host, port, timeout))
        return EchoOutcome(ok=False, reason="association aborted by peer")
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if not status or "Status" not in status:
        return EchoOutcome(ok=False, reason="no C-ECHO response (timed out or aborted)")
    code = int(status.Status)
    if code != 0x0000:
        return EchoOutcome(ok=False, reason=f"C-ECHO failed with status 0x{code:04X}", status=code)
    return EchoOutcome(ok=True, status=code)
