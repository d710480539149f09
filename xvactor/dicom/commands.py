"""DIMSE command sets encoded and decoded by hand, for the messages on the receive hot path.

A command set is always Implicit VR Little Endian (PS3.7 Section 6.3.1): each element is
tag (group, element), a 4-byte length and the value, preceded by the Command Group Length
(0000,0000).  pynetdicom builds and reads these through pydicom datasets, which costs more
than the rest of answering a C-STORE; the encoding and decoding here are checked against
pynetdicom's in tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "C_FIND_RSP",
    "C_STORE_RQ",
    "C_STORE_RSP",
    "NO_DATASET",
    "StoreRequest",
    "decode_c_store_rq",
    "encode_c_find_rsp_pending",
    "encode_c_store_rsp",
    "pdv_command_last",
    "pdv_headers",
    "pdvs_dataset",
]

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_FIND_RSP = 0x8020
NO_DATASET = 0x0101
DATASET_PRESENT = 0x0001  # any value but 0x0101 (PS3.7 Section E.1); as pynetdicom writes
_DATA_FRAGMENT = b"\x00"  # PS3.8 E.2: data set information, more fragments follow
_DATA_LAST_FRAGMENT = b"\x02"
_COMMAND_LAST_FRAGMENT = b"\x03"  # PS3.8 E.2: command information, last fragment


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii", errors="replace")  # never raise on the DUL thread
    return raw + b"\x00" if len(raw) % 2 else raw


def _lo(value: str) -> bytes:
    raw = value.encode("ascii", errors="replace")[:64]
    return raw + b" " if len(raw) % 2 else raw


def encode_c_store_rsp(
    *,
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    status: int,
    error_comment: str | None = None,
) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 Section 9.3.1.2, Table 9.3-2)."""
    body = b"".join(
        (
            _element(0x0002, _uid(sop_class_uid)),  # Affected SOP Class UID
            _element(0x0100, struct.pack("<H", C_STORE_RSP)),  # Command Field
            _element(0x0120, struct.pack("<H", message_id)),  # Message ID Being Responded To
            _element(0x0800, struct.pack("<H", NO_DATASET)),  # Command Data Set Type
            _element(0x0900, struct.pack("<H", status)),  # Status
            _element(0x0902, _lo(error_comment)) if error_comment else b"",  # Error Comment
            _element(0x1000, _uid(sop_instance_uid)),  # Affected SOP Instance UID
        )
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


def pdv_headers(length: int, context_id: int, control: int) -> bytes:
    """The P-DATA-TF header and PDV item header for one PDV of ``length`` bytes (PS3.8 9.3.5).

    ``control`` is the Message Control Header (PS3.8 Annex E.2): bit 0 set for a command
    fragment, bit 1 set for the last fragment.  The value's bytes follow these headers.
    """
    return struct.pack(">BBIIBB", 0x04, 0, length + 6, length + 2, context_id, control)


def pdv_command_last(command_set: bytes) -> bytes:
    """A presentation data value holding a whole command set (PS3.8 Annex E.2)."""
    return _COMMAND_LAST_FRAGMENT + command_set


def encode_c_find_rsp_pending(*, message_id: int, sop_class_uid: str) -> bytes:
    """The command set of a Pending C-FIND-RSP with an Identifier (PS3.7 9.3.2.2, 9.1.2.1.6).

    Status 0xFF00; Affected SOP Class UID, Message ID Being Responded To, and a Command
    Data Set Type saying an Identifier follows.
    """
    body = b"".join(
        (
            _element(0x0002, _uid(sop_class_uid)),  # Affected SOP Class UID
            _element(0x0100, struct.pack("<H", C_FIND_RSP)),  # Command Field
            _element(0x0120, struct.pack("<H", message_id)),  # Message ID Being Responded To
            _element(0x0800, struct.pack("<H", DATASET_PRESENT)),  # Command Data Set Type
            _element(0x0900, struct.pack("<H", 0xFF00)),  # Status: Pending
        )
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


def pdvs_dataset(data: bytes, max_fragment: int) -> list[bytes]:
    """A data set as presentation data values of at most ``max_fragment`` bytes each.

    ``max_fragment`` counts the data only (the peer's maximum PDU length less the PDU
    and PDV headers); 0 means one fragment.
    """
    if max_fragment <= 0 or len(data) <= max_fragment:
        return [_DATA_LAST_FRAGMENT + data]
    chunks = [data[i : i + max_fragment] for i in range(0, len(data), max_fragment)]
    return [_DATA_FRAGMENT + chunk for chunk in chunks[:-1]] + [_DATA_LAST_FRAGMENT + chunks[-1]]


@dataclass(frozen=True)
class StoreRequest:
    """The fields of a C-STORE-RQ command set the receive path needs (PS3.7 Table 9.3-1)."""

    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    data_set_present: bool


_US_TAGS = {0x0100, 0x0110, 0x0700, 0x0800}  # Command Field, Message ID, Priority, Data Set Type
_UID_TAGS = {0x0002, 0x1000}  # Affected SOP Class UID, Affected SOP Instance UID


def decode_c_store_rq(command_set: bytes) -> StoreRequest | None:
    """Read a C-STORE-RQ command set; ``None`` for any other command or anything unusual.

    ``None`` sends the message down pynetdicom's own decoding, which handles every other
    command and reports malformed ones its own way.  Only group 0000 elements with the
    value lengths PS3.7 gives them are accepted here.
    """
    values: dict[int, bytes] = {}
    offset, end = 0, len(command_set)
    view = memoryview(command_set)
    while offset < end:
        if end - offset < 8:
            return None
        group, element, length = struct.unpack_from("<HHI", command_set, offset)
        offset += 8
        if group != 0x0000 or length > end - offset:
            return None
        values[element] = bytes(view[offset : offset + length])
        offset += length
    try:
        shorts = {tag: struct.unpack("<H", values[tag])[0] for tag in _US_TAGS if tag in values}
        uids = {tag: values[tag].decode("ascii").rstrip("\x00 ") for tag in _UID_TAGS}
    except (KeyError, struct.error, UnicodeDecodeError):
        return None
    if shorts.get(0x0100) != C_STORE_RQ or 0x0110 not in shorts or 0x0800 not in shorts:
        return None
    if not all(uids.values()):
        return None
    return StoreRequest(
        message_id=shorts[0x0110],
        affected_sop_class_uid=uids[0x0002],
        affected_sop_instance_uid=uids[0x1000],
        data_set_present=shorts[0x0800] != NO_DATASET,
    )
