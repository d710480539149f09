"""The bench's association on a socket pair: responses split or packed, aborts, timeouts."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from xvactor.bench import pdu
from xvactor.bench.dimse import Response, c_find_rq
from xvactor.bench.wire import Association, Target, WireError


def _command(status: int, with_data: bool) -> bytes:
    def element(tag: int, value: int) -> bytes:
        return struct.pack("<HHIH", 0, tag, 2, value)

    body = element(0x0100, 0x8020) + element(0x0120, 1)
    body += element(0x0800, 0x0000 if with_data else 0x0101) + element(0x0900, status)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def _pdv(data: bytes, control: int) -> bytes:
    return struct.pack(">IBB", len(data) + 2, 1, control) + data


def _p_data(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBI", pdu.P_DATA_TF, 0, len(body)) + body


def _pair(answer: bytes) -> tuple[Association, threading.Thread]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    target = Target("peer", 1, "PEER", timeout=5)
    assoc = Association(ours, target, pdu.AssociateAccept(16384, {1: "1.2.840.10008.1.2"}, {}))

    def peer() -> None:
        with theirs:
            theirs.recv(65536)  # the request
            theirs.sendall(answer)
            theirs.recv(65536)  # the release request, or our close

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    return assoc, thread


@pytest.mark.parametrize("packed", [True, False])
def test_pending_responses_with_data_in_one_or_several_pdus(packed: bool) -> None:
    identifier = b"\x10\x00\x20\x00\x02\x00\x00\x00XV"
    if packed:  # command and data set of a pending response in one P-DATA-TF
        answer = _p_data(_pdv(_command(0xFF00, True), 0x03), _pdv(identifier, 0x02))
    else:
        answer = _p_data(_pdv(_command(0xFF00, True), 0x03)) + _p_data(_pdv(identifier, 0x02))
    answer += _p_data(_pdv(_command(0x0000, False), 0x03))
    assoc, thread = _pair(answer)
    seen: list[int] = []

    def on_response(response: Response) -> bool:
        seen.append(response.status)
        return response.status == 0xFF00

    final = assoc.request(1, c_find_rq(1, "1.2.3"), memoryview(identifier), on_response)
    assert final.status == 0x0000
    assert seen == [0xFF00, 0x0000]
    assoc.abort()
    thread.join(5)


def test_abort_from_the_peer_is_an_error_of_kind_aborted() -> None:
    assoc, thread = _pair(pdu.ABORT)
    with pytest.raises(WireError) as caught:
        assoc.request(1, c_find_rq(1, "1.2.3"), memoryview(b"\0" * 8))
    assert caught.value.kind == "aborted"
    assert not assoc.open
    thread.join(5)


def test_large_data_sets_go_in_fragments_no_larger_than_the_peer_takes() -> None:
    ours, theirs = socket.socketpair()
    accept = pdu.AssociateAccept(4096, {1: "1.2.840.10008.1.2.1"}, {})
    assoc = Association(ours, Target("peer", 1, "PEER", timeout=5), accept)
    data = bytes(range(256)) * 100  # 25600 bytes
    received = bytearray()
    # command PDU (12 + 74 bytes), then 7 data PDUs of at most 4090 bytes, 12 bytes of headers
    expected = 12 + 74 + 25600 + 12 * 7

    def peer() -> None:
        with theirs:
            while len(received) < expected:
                chunk = theirs.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)
            theirs.sendall(_p_data(_pdv(_command(0x0000, False), 0x03)))

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    assert assoc.request(1, b"\0" * 74, memoryview(data)).status == 0
    thread.join(5)
    offset, payload, sizes = 0, bytearray(), []
    while offset < len(received):
        length = struct.unpack_from(">I", received, offset + 2)[0]
        assert length <= 4096
        for _, control, fragment in pdu.iter_pdvs(
            bytes(received[offset + 6 : offset + 6 + length])
        ):
            if not control & 1:
                payload += fragment
                sizes.append(len(fragment))
        offset += 6 + length
    assert payload == data
    assert max(sizes) == 4096 - 6
    assoc.abort()
