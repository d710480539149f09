"""DIMSE command sets (PS3.7 Section 9.3, Annex E) for the requests the bench sends.

Command sets are always Implicit VR Little Endian (PS3.7 Section 6.3.1): each element is
tag, 4-byte length and value, with a Command Group Length (0000,0000) first.  Building one
with ``struct`` costs a few microseconds, against tens for a pydicom encode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "C_ECHO_RQ",
    "C_FIND_RQ",
    "C_STORE_RQ",
    "NO_DATA_SET",
    "Response",
    "c_echo_rq",
    "c_find_rq",
    "c_store_rq",
    "decode_response",
]

C_STORE_RQ = 0x0001
C_FIND_RQ = 0x0020
C_ECHO_RQ = 0x0030
NO_DATA_SET = 0x0101
"""Command Data Set Type (0000,0800) when no data set follows."""

_DATA_SET_PRESENT = 0x0000
_MEDIUM = 0x0000
_VERIFICATION = "1.2.840.10008.1.1"


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<HHI", 0, element, len(v)) + v for element, v in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def c_store_rq(message_id: int, sop_class_uid: str, sop_instance_uid: str) -> bytes:
    """C-STORE-RQ (PS3.7 Section 9.3.1.1), medium priority, data set present."""
    return _command(
        [
            (0x0002, _ui(sop_class_uid)),
            (0x0100, _us(C_STORE_RQ)),
            (0x0110, _us(message_id)),
            (0x0700, _us(_MEDIUM)),
            (0x0800, _us(_DATA_SET_PRESENT)),
            (0x1000, _ui(sop_instance_uid)),
        ]
    )


def c_echo_rq(message_id: int) -> bytes:
    """C-ECHO-RQ (PS3.7 Section 9.3.5.1)."""
    return _command(
        [
            (0x0002, _ui(_VERIFICATION)),
            (0x0100, _us(C_ECHO_RQ)),
            (0x0110, _us(message_id)),
            (0x0800, _us(NO_DATA_SET)),
        ]
    )


def c_find_rq(message_id: int, sop_class_uid: str) -> bytes:
    """C-FIND-RQ (PS3.7 Section 9.3.2.1), medium priority, an Identifier follows."""
    return _command(
        [
            (0x0002, _ui(sop_class_uid)),
            (0x0100, _us(C_FIND_RQ)),
            (0x0110, _us(message_id)),
            (0x0700, _us(_MEDIUM)),
            (0x0800, _us(_DATA_SET_PRESENT)),
        ]
    )


@dataclass(frozen=True)
class Response:
    """The fields of a DIMSE response command set the bench looks at."""

    command_field: int
    message_id_being_responded_to: int
    status: int
    has_data_set: bool
    error_comment: str = ""


def decode_response(command: bytes) -> Response:
    """Decode a response command set (Implicit VR Little Endian).

    Raises
    ------
    ValueError
        If an element overruns the command set, or Status (0000,0900) is missing.
    """
    values: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHI", command, offset)
        start = offset + 8
        if start + length > len(command):
            raise ValueError("command element overruns the command set")
        if group == 0:
            values[element] = command[start : start + length]
        offset = start + length
    if 0x0900 not in values or len(values[0x0900]) != 2:
        raise ValueError("response without Status (0000,0900)")

    def us(element: int, default: int) -> int:
        raw = values.get(element)
        return int(struct.unpack("<H", raw)[0]) if raw is not None and len(raw) == 2 else default

    comment = values.get(0x0902, b"").rstrip(b"\0 ").decode("ascii", "replace")
    return Response(
        command_field=us(0x0100, 0),
        message_id_being_responded_to=us(0x0120, 0),
        status=us(0x0900, 0xFFFF),
        has_data_set=us(0x0800, NO_DATA_SET) != NO_DATA_SET,
        error_comment=comment,
    )
