"""The receive path's own P-DATA-TF reading, against a peer writing raw PDUs.

In an established association the node reads P-DATA-TF PDUs itself (``xvactor.dicom
.reactor``).  A peer that splits a PDU across TCP segments must still be understood; one
that sends items not adding up to their PDU, or drops the connection mid-dataset, gets an
A-ABORT or a closed association, never a stored fragment, and the node goes on serving.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian

from tests.integration.helpers import stored_path
from tests.integration.test_store_status import instance_count, leftovers, send
from xvactor.bench import dimse, pdu
from xvactor.testing.datasets import make_dataset
from xvactor.testing.node import NodeHandle

CONTEXT_ID = 1
A_ABORT = 0x07


def encoded(ds: Dataset) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return out.getvalue()


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return 0, b""  # closed
        head += chunk
    pdu_type, _, length = struct.unpack(">BBI", head)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return pdu_type, body


@contextmanager
def associated(handle: NodeHandle, ds: Dataset) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = pdu.PresentationContext(
            CONTEXT_ID, str(ds.SOPClassUID), (str(ExplicitVRLittleEndian),)
        )
        sock.sendall(
            pdu.encode_associate_rq(
                handle.ae_title,
                "RAWPEER",
                [context],
                max_pdu=16384,
                implementation_class_uid="1.2.3.4",
                implementation_version_name="RAW",
            )
        )
        pdu_type, body = read_pdu(sock)
        assert pdu_type == 0x02, f"not accepted: PDU type {pdu_type}"
        assert pdu.decode_associate_ac(body).accepted == {CONTEXT_ID: ExplicitVRLittleEndian}
        yield sock
    finally:
        sock.close()


def p_data(control: int, fragment: bytes) -> bytes:
    return pdu.pdv_headers(len(fragment), CONTEXT_ID, control) + fragment


def c_store(ds: Dataset) -> bytes:
    command = dimse.c_store_rq(1, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    return p_data(0x03, command) + p_data(0x02, encoded(ds))


def status_of(body: bytes) -> int:
    (_, _, fragment) = next(pdu.iter_pdvs(body))
    return dimse.decode_response(fragment).status


def test_a_pdu_split_across_segments_is_stored(node: NodeHandle) -> None:
    ds = make_dataset()
    with associated(node, ds) as sock:
        message = c_store(ds)
        for piece in (message[:3], message[3:9], message[9:40], message[40:]):
            sock.sendall(piece)
            time.sleep(0.05)  # each piece its own segment: a partial header, then a body
        pdu_type, body = read_pdu(sock)
        assert pdu_type == 0x04
        assert status_of(body) == 0x0000
    assert stored_path(node, ds).is_file()


def test_items_not_adding_up_to_their_pdu_abort_the_association(node: NodeHandle) -> None:
    ds = make_dataset()
    with associated(node, ds) as sock:
        command = dimse.c_store_rq(1, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        bad = bytearray(p_data(0x03, command))
        struct.pack_into(">I", bad, 6, len(command) + 200)  # the item claims more than is there
        sock.sendall(bad)
        pdu_type, _ = read_pdu(sock)
        assert pdu_type == A_ABORT
    assert instance_count(node) == 0
    assert leftovers(node) == []
    healthy = make_dataset()
    assert send(node, healthy).Status == 0x0000


def test_a_connection_dropped_mid_dataset_leaves_nothing(node: NodeHandle) -> None:
    ds = make_dataset(rows=256, columns=256)
    data = encoded(ds)
    with associated(node, ds) as sock:
        command = dimse.c_store_rq(1, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        sock.sendall(p_data(0x03, command) + p_data(0x00, data[:8000]))
        # Half of the next PDU, then the connection goes.
        sock.sendall(p_data(0x00, data[8000:16000])[:3000])
    deadline = time.monotonic() + 10
    while leftovers(node):
        assert time.monotonic() < deadline, f"partial dataset left: {leftovers(node)}"
        time.sleep(0.02)
    assert instance_count(node) == 0
    assert send(node, make_dataset()).Status == 0x0000
