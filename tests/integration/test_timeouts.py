"""Peers that go quiet: dropped after the phase's timeout, nothing half-stored."""

from __future__ import annotations

import socket
import time
from io import BytesIO
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF

from xvactor.testing.datasets import make_dataset

CT = "1.2.840.10008.5.1.4.1.1.2"


def wait_closed(sock: socket.socket, limit: float) -> float:
    """Seconds until the peer closes ``sock`` (reading and discarding what it sends).

    When ``sock`` belongs to a pynetdicom association, its own DUL thread may see the close
    first and close the descriptor: that too means the peer dropped us.
    """
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            raise
    return time.monotonic() - start


def test_silent_peer_dropped_after_acse_timeout(make_node: Any) -> None:
    handle = make_node(timeouts={"acse": 1.0})
    with socket.create_connection((handle.host, handle.port)) as sock:
        assert wait_closed(sock, 10) < 5


def test_stall_mid_dataset_dropped_after_idle_timeout_and_nothing_kept(make_node: Any) -> None:
    handle = make_node(timeouts={"idle": 1.0})
    ae = AE(ae_title="STALLER")
    ae.add_requested_context(CT, [ExplicitVRLittleEndian])
    assoc = ae.associate(handle.host, handle.port, ae_title=handle.ae_title)
    assert assoc.is_established
    context_id = assoc.accepted_contexts[0].context_id
    ds = make_dataset(rows=256, columns=256)
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = CT
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    encoded = encode(ds, False, True)
    assert encoded is not None
    request.DataSet = BytesIO(encoded)
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    fragments = list(message.encode_msg(context_id, 16384))
    assert len(fragments) > 3
    raw = assoc.dul.socket
    assert raw is not None and raw.socket is not None
    sock = raw.socket
    # Send the command and the first part of the dataset, then fall silent.
    for primitive in fragments[:2]:
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        sock.sendall(pdu.encode())
    elapsed = wait_closed(sock, 10)
    assoc.abort()
    sock.close()  # pynetdicom's requestor leaves it open when the peer drops it
    assert elapsed < 5
    assert handle.catalog_rows("SELECT COUNT(*) FROM instances") == [(0,)]
    # The partial dataset is deleted when the node closes the connection, which the
    # client may see a moment before that handler has run.
    deadline = time.monotonic() + 5
    while partial := list(handle.data_dir.rglob("*.dcm")):
        assert time.monotonic() < deadline, partial
        time.sleep(0.02)


def test_c_store_without_a_dataset_is_refused_with_a_status(make_node: Any) -> None:
    """A C-STORE-RQ whose Command Data Set Type says "no dataset" (PS3.7 9.3.1.1)."""
    handle = make_node()
    ae = AE(ae_title="NODATA")
    ae.add_requested_context(CT, [ExplicitVRLittleEndian])
    assoc = ae.associate(handle.host, handle.port, ae_title=handle.ae_title)
    assert assoc.is_established
    request = C_STORE()
    request.MessageID = 5
    request.AffectedSOPClassUID = CT
    request.AffectedSOPInstanceUID = "1.2.3.4"
    request.Priority = 2
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    assert message.command_set.CommandDataSetType == 0x0101
    context_id = assoc.accepted_contexts[0].context_id
    raw = assoc.dul.socket
    assert raw is not None and raw.socket is not None
    # Pause the requestor's reactor, as pynetdicom's send_* methods do, so that the
    # response waits for get_msg instead of being taken as unexpected.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.001)
    for primitive in message.encode_msg(context_id, 16384):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        raw.socket.sendall(pdu.encode())
    _, response = assoc.dimse.get_msg(block=True)
    assoc._reactor_checkpoint.set()
    assoc.release()
    assert response is not None
    assert response.Status == 0xC000
    assert response.ErrorComment == "C-STORE-RQ without a dataset"
    assert handle.catalog_rows("SELECT COUNT(*) FROM instances") == [(0,)]
