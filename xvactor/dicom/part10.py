"""DICOM Part 10 files: our File Meta, the dataset offset, and reading a header.

A received C-STORE dataset is kept exactly as the peer encoded it; only the File Meta
Information (PS3.10 Section 7.1) is ours: the command's Affected SOP Class/Instance UIDs,
the accepted transfer syntax, our Implementation Class UID and Version Name, and the
calling AE as Source Application Entity Title.  These functions block; callers run them on
a worker thread.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

__all__ = [
    "FileMeta",
    "HeaderRead",
    "dataset_offset",
    "encode_file_meta",
    "fsync_directory",
    "read_header",
]

_PREAMBLE = b"\x00" * 128 + b"DICM"
# Stop header parsing at the bulk data: Pixel Data and friends (7FE0,xxxx), or an
# Encapsulated Document (0042,0011), so a header read never loads the bulk into memory.
_BULK_START = 0x7FE00000
_ENCAPSULATED_DOCUMENT = 0x00420011


@dataclass(frozen=True)
class FileMeta:
    """The values that make up our File Meta Information (PS3.10 Section 7.1)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    implementation_class_uid: str
    implementation_version_name: str
    source_ae_title: str


def _element(group_element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    """One explicit VR little endian element with a 2-byte length (PS3.5 7.1.2)."""
    if len(value) % 2:
        value += pad
    return struct.pack("<HH2sH", 0x0002, group_element, vr, len(value)) + value


def encode_file_meta(meta: FileMeta) -> bytes:
    """Return the preamble, ``DICM`` prefix and encoded group 0002 elements.

    Encoded by hand (PS3.10 Section 7.1, explicit VR little endian): this runs for every
    received instance, and pydicom's general encoder costs several times more.
    """
    body = b"".join(
        (
            # (0002,0001) OB has a 4-byte length after two reserved bytes.
            struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _element(0x0002, b"UI", meta.sop_class_uid.encode("ascii"), b"\x00"),
            _element(0x0003, b"UI", meta.sop_instance_uid.encode("ascii"), b"\x00"),
            _element(0x0010, b"UI", meta.transfer_syntax_uid.encode("ascii"), b"\x00"),
            _element(0x0012, b"UI", meta.implementation_class_uid.encode("ascii"), b"\x00"),
            _element(0x0013, b"SH", meta.implementation_version_name.encode("ascii"), b" "),
            _element(0x0016, b"AE", meta.source_ae_title.strip().encode("ascii"), b" ")
            if meta.source_ae_title.strip()
            else b"",
        )
    )
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return _PREAMBLE + group_length + body


def dataset_offset(fp: BinaryIO) -> int:
    """Return the offset of the dataset in a Part 10 stream positioned at its start.

    Reads the (0002,0000) File Meta Information Group Length, which PS3.10 makes mandatory.

    Raises
    ------
    ValueError
        If the stream does not start with a preamble, ``DICM`` and a group length.
    """
    head = fp.read(132 + 12)
    if len(head) < 144 or head[128:132] != b"DICM":
        raise ValueError("not a DICOM Part 10 stream")
    tag_group, tag_element, vr = struct.unpack("<HH2s", head[132:138])
    if (tag_group, tag_element) != (0x0002, 0x0000) or vr != b"UL":
        raise ValueError("File Meta Information Group Length missing")
    group_length: int = struct.unpack("<I", head[140:144])[0]
    return 144 + group_length


def fsync_directory(path: Path | str) -> None:
    """Make a rename or link inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class HeaderRead:
    """A dataset's header: decoded (lazily, by pydicom) and as the raw bytes received."""

    dataset: Dataset
    raw: bytes
    """The dataset's bytes up to its bulk data, in the file's transfer syntax."""


_LONGEST_ELEMENT_HEADER = 12
"""Tag, VR, reserved bytes and 4-byte length of an explicit VR element (PS3.5 7.1.2)."""


def _at_bulk(tag: int, _vr: str | None, _length: int) -> bool:
    return tag >= _BULK_START or tag == _ENCAPSULATED_DOCUMENT


def read_header(path: Path, offset: int, transfer_syntax_uid: str) -> HeaderRead:
    """Parse the dataset of ``path`` (starting at ``offset``) up to its bulk data.

    Raises
    ------
    ValueError
        (or another pydicom error) when the bytes are not a dataset in that syntax.
    """
    with path.open("rb") as fp:
        return read_header_from(fp, offset, transfer_syntax_uid)


def read_header_in(
    head: bytes, offset: int, transfer_syntax_uid: str, *, size: int
) -> HeaderRead | None:
    """:func:`read_header` from the first bytes of a file of ``size`` bytes.

    ``None`` when the header may run past ``head`` (read it from the file instead).
    """
    stream = io.BytesIO(head)
    whole = len(head) >= size
    try:
        header = read_header_from(stream, offset, transfer_syntax_uid)
    except Exception:
        if whole:
            raise
        return None
    if not whole and offset + len(header.raw) > len(head) - _LONGEST_ELEMENT_HEADER:
        return None  # stopped at (or near) the end of what was read, not at bulk data
    return header


def read_header_from(fp: BinaryIO, offset: int, transfer_syntax_uid: str) -> HeaderRead:
    """:func:`read_header` from an open file (its position is left after the header)."""
    syntax = UID(transfer_syntax_uid)
    fp.seek(offset)
    dataset = read_dataset(
        fp,
        syntax.is_implicit_VR,
        syntax.is_little_endian,
        stop_when=_at_bulk,
    )
    end = fp.tell()
    fp.seek(offset)
    raw = fp.read(end - offset)
    dataset.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian)
    return HeaderRead(dataset=dataset, raw=raw)
