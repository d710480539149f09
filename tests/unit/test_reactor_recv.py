"""The reactor's socket reads: whole PDUs in one buffer, grown only as bytes arrive."""

from __future__ import annotations

import os
import socket
import threading
import tracemalloc
from types import SimpleNamespace
from typing import Any, cast

from xvactor.dicom.reactor import _presentation_data_values, _recv


def transport(sock: socket.socket) -> Any:
    return cast(Any, SimpleNamespace(socket=sock))


def test_a_large_pdu_arrives_whole() -> None:
    ours, peer = socket.socketpair()
    payload = os.urandom(700_000)  # more than the first buffer, in many segments
    sender = threading.Thread(target=peer.sendall, args=(payload,))
    sender.start()
    try:
        assert bytes(_recv(transport(ours), len(payload))) == payload
    finally:
        sender.join()
        ours.close()
        peer.close()


def test_a_length_the_peer_never_sends_costs_only_what_it_sent() -> None:
    ours, peer = socket.socketpair()
    peer.sendall(b"x" * 1000)
    peer.close()
    tracemalloc.start()
    try:
        got = _recv(transport(ours), 1 << 30)  # a header claiming a gigabyte
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        ours.close()
    assert bytes(got) == b"x" * 1000
    assert peak < 4 << 20


def test_items_are_split_into_views_or_refused() -> None:
    item = (6).to_bytes(4, "big") + bytes([1, 0x03]) + b"abcd"
    pdu = bytearray(b"\x04\x00" + (2 * len(item)).to_bytes(4, "big") + item + item)
    values = _presentation_data_values(pdu)
    assert values is not None
    assert [(cid, bytes(v)) for cid, v in values] == [(1, b"\x03abcd"), (1, b"\x03abcd")]
    assert _presentation_data_values(pdu[:-1]) is None  # the last item overruns
    assert _presentation_data_values(bytearray(b"\x04\x00\x00\x00\x00\x00")) is None  # empty
