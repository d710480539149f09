"""The upper-layer PDUs (PS3.8 Section 9.3) the load generator speaks, encoded by hand.

A load generator must be cheaper than the peer it loads.  pynetdicom spends most of a
C-STORE's CPU in its reactors and in pydicom encoding of command sets
(``/work/shared/reference/performance-facts.md``); DCMTK's ``storescu`` reaches 3-4 times
its rate.  The bench therefore speaks the few PDUs a requestor needs directly:

* A-ASSOCIATE-RQ (PS3.8 Section 9.3.2) with the Application Context, Presentation Context
  and User Information items (Maximum Length, Implementation Class UID and Version Name,
  PS3.7 Annex D.3.3);
* A-ASSOCIATE-AC / -RJ decoding (PS3.8 Sections 9.3.3, 9.3.4);
* P-DATA-TF with its PDV items (PS3.8 Section 9.3.5, Annex E);
* A-RELEASE-RQ/-RP and A-ABORT (PS3.8 Sections 9.3.6 to 9.3.8).

UIDs in these items are not padded (PS3.8 Annex F).  Everything here is pure: bytes in,
bytes or values out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from xvactor.dicom.commands import pdv_headers

__all__ = [
    "ABORT",
    "APPLICATION_CONTEXT",
    "ASSOCIATE_AC",
    "ASSOCIATE_RJ",
    "ASSOCIATE_RQ",
    "A_ABORT",
    "P_DATA_TF",
    "RELEASE_RP",
    "RELEASE_RQ",
    "AssociateAccept",
    "AssociateReject",
    "PresentationContext",
    "decode_associate_ac",
    "decode_associate_rj",
    "encode_associate_rq",
    "iter_pdvs",
    "pdv_headers",
]

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ_TYPE = 0x05
RELEASE_RP_TYPE = 0x06
A_ABORT = 0x07

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
"""The DICOM Application Context Name (PS3.7 Annex A.2.1)."""

RELEASE_RQ = bytes((RELEASE_RQ_TYPE, 0)) + struct.pack(">I", 4) + bytes(4)
RELEASE_RP = bytes((RELEASE_RP_TYPE, 0)) + struct.pack(">I", 4) + bytes(4)
ABORT = bytes((A_ABORT, 0)) + struct.pack(">I", 4) + bytes((0, 0, 0, 0))
"""A-ABORT from the service user (source 0, reason 0)."""

_RESULTS = {
    0: "acceptance",
    1: "user-rejection",
    2: "no-reason",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}


@dataclass(frozen=True)
class PresentationContext:
    """A proposed presentation context: odd ID, abstract syntax, transfer syntaxes."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class AssociateAccept:
    """What an A-ASSOCIATE-AC tells the requestor.

    Attributes
    ----------
    max_pdu : int
        The acceptor's Maximum Length Received (0: unlimited), PS3.8 Annex D.1.
    accepted : dict of int to str
        Accepted context ID -> the transfer syntax the acceptor chose.
    refused : dict of int to str
        Refused context ID -> the reason (PS3.8 Table 9-18).
    """

    max_pdu: int
    accepted: dict[int, str]
    refused: dict[int, str]


@dataclass(frozen=True)
class AssociateReject:
    """Result, source and reason of an A-ASSOCIATE-RJ (PS3.8 Table 9-21)."""

    result: int
    source: int
    reason: int

    def __str__(self) -> str:
        kind = "permanent" if self.result == 1 else "transient"
        return f"association rejected ({kind}, source {self.source}, reason {self.reason})"


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _ae_title(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")[:16]


def encode_associate_rq(
    called_ae_title: str,
    calling_ae_title: str,
    contexts: Sequence[PresentationContext],
    *,
    max_pdu: int,
    implementation_class_uid: str,
    implementation_version_name: str,
) -> bytes:
    """Return an A-ASSOCIATE-RQ PDU (PS3.8 Section 9.3.2)."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode("ascii"))]
    for cx in contexts:
        sub = _item(0x30, cx.abstract_syntax.encode("ascii"))
        sub += b"".join(_item(0x40, ts.encode("ascii")) for ts in cx.transfer_syntaxes)
        items.append(_item(0x20, bytes((cx.context_id, 0, 0, 0)) + sub))
    user = _item(0x51, struct.pack(">I", max_pdu))
    user += _item(0x52, implementation_class_uid.encode("ascii"))
    user += _item(0x55, implementation_version_name.encode("ascii"))
    items.append(_item(0x50, user))
    body = struct.pack(">HH", 1, 0) + _ae_title(called_ae_title) + _ae_title(calling_ae_title)
    body += bytes(32) + b"".join(items)
    return struct.pack(">BBI", ASSOCIATE_RQ, 0, len(body)) + body


def _items(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= len(data):
        item_type, _, length = struct.unpack_from(">BBH", data, offset)
        yield item_type, data[offset + 4 : offset + 4 + length]
        offset += 4 + length


def decode_associate_ac(body: bytes) -> AssociateAccept:
    """Decode the variable part of an A-ASSOCIATE-AC (``body`` follows the 6-byte header).

    Raises
    ------
    ValueError
        If the PDU is too short to be one.
    """
    if len(body) < 68:
        raise ValueError(f"A-ASSOCIATE-AC of {len(body)} bytes is too short")
    max_pdu = 0
    accepted: dict[int, str] = {}
    refused: dict[int, str] = {}
    for item_type, value in _items(body, 68):
        if item_type == 0x21 and len(value) >= 4:
            context_id, result = value[0], value[2]
            syntax = ""
            for sub_type, sub in _items(value, 4):
                if sub_type == 0x40:
                    syntax = sub.rstrip(b"\0 ").decode("ascii")
            if result == 0:
                accepted[context_id] = syntax
            else:
                refused[context_id] = _RESULTS.get(result, f"result {result}")
        elif item_type == 0x50:
            for sub_type, sub in _items(value, 0):
                if sub_type == 0x51 and len(sub) == 4:
                    max_pdu = struct.unpack(">I", sub)[0]
    return AssociateAccept(max_pdu=max_pdu, accepted=accepted, refused=refused)


def decode_associate_rj(body: bytes) -> AssociateReject:
    """Decode the 4-byte body of an A-ASSOCIATE-RJ."""
    if len(body) < 4:
        raise ValueError("A-ASSOCIATE-RJ too short")
    return AssociateReject(result=body[1], source=body[2], reason=body[3])


def iter_pdvs(body: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(context ID, control header, fragment)`` for each PDV in a P-DATA-TF body.

    Raises
    ------
    ValueError
        If a PDV item overruns the PDU.
    """
    offset = 0
    while offset < len(body):
        if offset + 6 > len(body):
            raise ValueError("truncated PDV item")
        length, context_id, control = struct.unpack_from(">IBB", body, offset)
        end = offset + 4 + length
        if length < 2 or end > len(body):
            raise ValueError("PDV item length overruns its P-DATA-TF PDU")
        yield context_id, control, body[offset + 6 : end]
        offset = end
