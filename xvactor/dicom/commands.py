"""DIMSE command sets encoded by hand, for the messages on the receive hot path.

A command set is always Implicit VR Little Endian (PS3.7 Section 6.3.1): each element is
tag (group, element), a 4-byte length and the value, preceded by the Command Group Length
(0000,0000).  pynetdicom builds these through pydicom datasets, which costs more than the
rest of answering a C-STORE; the encoding here is checked against pynetdicom's in tests.
"""

from __future__ import annotations

import struct

__all__ = ["C_STORE_RSP", "NO_DATASET", "encode_c_store_rsp", "pdv_command_last"]

C_STORE_RSP = 0x8001
NO_DATASET = 0x0101
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


def pdv_command_last(command_set: bytes) -> bytes:
    """A presentation data value holding a whole command set (PS3.8 Annex E.2)."""
    return _COMMAND_LAST_FRAGMENT + command_set
