"""Write a dataset as PS3.10 bytes with the output encoding options of a destination.

pydicom encodes single element values; this module does the structure around them, which
pydicom does not let one choose: sequences and items of defined or undefined length
(PS3.5 Section 7.5), Group Length elements (PS3.5 Section 7.2), empty elements left out,
byte order (bulk OW/OL/OF/OD/OV values swapped, PS3.5 Section 7.3), and Pixel Data
streamed from an iterator of chunks so a large object never sits in memory whole.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, TypeAlias

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomFileLike
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRBigEndian, ImplicitVRLittleEndian

from xvactor.transcode.errors import TranscodeError

__all__ = ["BulkElement", "Format", "encode_item_body", "transfer_syntax_of", "write_part10"]

_PREAMBLE: Final = b"\x00" * 128 + b"DICM"
_UNDEFINED: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_DELIMITER: Final = 0xFFFEE00D
_SEQUENCE_DELIMITER: Final = 0xFFFEE0DD
_LENGTH_TO_END: Final = 0x00080001
# Bulk VRs whose raw bytes are words of this many bytes (PS3.5 Section 7.3).
_WORD_SIZE: Final = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


@dataclass(frozen=True, slots=True)
class Format:
    """How to encode: the transfer syntax's VR and byte order, and the output options.

    Attributes
    ----------
    little_endian, implicit_vr : bool
        From the transfer syntax (PS3.5 Section 10).
    group_lengths, undefined_lengths, drop_empty : bool
        See :class:`xvactor.transcode.options.OutputEncoding`.
    swap_bulk : bool
        The dataset's OW/OL/OF/OD/OV byte values are in the other byte order.
    """

    little_endian: bool
    implicit_vr: bool
    group_lengths: bool = False
    undefined_lengths: bool = False
    drop_empty: bool = False
    swap_bulk: bool = False

    @classmethod
    def for_syntax(cls, target: str, source: str, **options: bool) -> Format:
        """Return the format for writing a dataset of transfer syntax `source` as `target`."""
        target_le = target != ExplicitVRBigEndian
        return cls(
            little_endian=target_le,
            implicit_vr=target == ImplicitVRLittleEndian,
            swap_bulk=target_le != (source != ExplicitVRBigEndian),
            **options,
        )

    def tag(self, tag: int) -> bytes:
        """Return `tag` encoded (group, then element)."""
        return struct.pack("<HH" if self.little_endian else ">HH", tag >> 16, tag & 0xFFFF)

    def ul(self, value: int) -> bytes:
        """Return a 32 bit unsigned value encoded."""
        return struct.pack("<L" if self.little_endian else ">L", value)

    def header(self, tag: int, vr: str, length: int) -> bytes:
        """Return the header of an element with a 32 bit length field (OB, OW, SQ, UL ...)."""
        if self.implicit_vr:
            return self.tag(tag) + self.ul(length)
        if vr == "UL":
            short = struct.pack("<H" if self.little_endian else ">H", length)
            return self.tag(tag) + b"UL" + short
        return self.tag(tag) + vr.encode() + b"\x00\x00" + self.ul(length)


@dataclass(frozen=True, slots=True)
class BulkElement:
    """An element whose value is streamed: Pixel Data, native or encapsulated.

    Attributes
    ----------
    tag : int
        The element's tag, e.g. ``0x7FE00010``.
    vr : str
        ``"OB"`` or ``"OW"``.
    value_length : int or None
        The length field; None for undefined length (encapsulated, PS3.5 A.4).
    size : int
        Bytes the value takes as written (for encapsulated data: items and the
        Sequence Delimitation Item included).
    chunks : callable
        Returns an iterable over the value's bytes, `size` in all, already in the target
        byte order. Called once per write.
    """

    tag: int
    vr: str
    value_length: int | None
    size: int
    chunks: Callable[[], Iterable[bytes]]

    def encoded_size(self, fmt: Format) -> int:
        """Return the bytes of header and value."""
        return (8 if fmt.implicit_vr else 12) + self.size

    def write(self, fp: BinaryIO, fmt: Format) -> None:
        """Write header and value to `fp`; raise if the chunks do not add up to `size`."""
        length = _UNDEFINED if self.value_length is None else self.value_length
        fp.write(fmt.header(self.tag, self.vr, length))
        written = 0
        for chunk in self.chunks():
            fp.write(chunk)
            written += len(chunk)
        if written != self.size:
            msg = f"internal error: {self.tag:08X} wrote {written} bytes, announced {self.size}"
            raise TranscodeError(msg)


Part: TypeAlias = "bytes | BulkElement"


def write_part10(
    fp: BinaryIO,
    ds: Dataset,
    file_meta: FileMetaDataset,
    fmt: Format,
    bulk: BulkElement | None = None,
    *,
    preamble: bool = True,
) -> None:
    """Write `ds` (and `bulk`, in tag order) as a PS3.10 file to `fp`.

    Parameters
    ----------
    fp : binary file
        Where to write.
    ds : pydicom.dataset.Dataset
        The dataset, without the element `bulk` stands for. Changed in place where its
        VRs are ambiguous (PS3.5 Annex A.1 c).
    file_meta : pydicom.dataset.FileMetaDataset
        File Meta Information with the Transfer Syntax UID of `fmt` (PS3.10 Section 7.1).
    fmt : Format
        The encoding.
    bulk : BulkElement, optional
        Pixel Data to stream.
    preamble : bool, optional
        With ``False`` only the dataset is written (for a C-STORE's P-DATA).
    """
    if preamble:
        fp.write(_PREAMBLE)
        meta = DicomFileLike(fp)
        meta.is_little_endian, meta.is_implicit_VR = True, False
        write_file_meta_info(meta, file_meta, enforce_standard=True)
    try:
        correct_ambiguous_vr(ds, fmt.little_endian)
    except AttributeError:  # an attribute the choice depends on is missing
        _settle_ambiguous_vr(ds)
    for part in _encode_body(ds, fmt, None, bulk, top=True):
        if isinstance(part, BulkElement):
            part.write(fp, fmt)
        else:
            fp.write(part)


def _settle_ambiguous_vr(ds: Dataset) -> None:
    """Give each element still of an ambiguous VR (``"US or OW"``) a definite one.

    Bytes values become OW (or OB), numbers US: what pydicom would pick with the
    attributes PS3.5 Annex A.1 c consults, when those are absent.
    """
    for elem in ds.iterall():
        if elem.VR is not None and " or " in elem.VR:
            options = elem.VR.split(" or ")
            binary = [vr for vr in options if vr.startswith("O")]
            if isinstance(elem.value, bytes) and binary:
                elem.VR = "OW" if "OW" in binary else binary[0]
            else:
                elem.VR = next((vr for vr in options if not vr.startswith("O")), options[0])


def encode_item_body(ds: Dataset, fmt: Format) -> bytes:
    """Return the encoded elements of `ds` with no Pixel Data streaming (e.g. an item)."""
    return b"".join(part for part in _encode_body(ds, fmt, None) if isinstance(part, bytes))


def _encode_body(
    ds: Dataset,
    fmt: Format,
    parent_charset: str | list[str] | None,
    bulk: BulkElement | None = None,
    *,
    top: bool = False,
) -> Iterator[Part]:
    charset = ds.get("SpecificCharacterSet", parent_charset)
    tags = [tag for tag in sorted(ds.keys()) if _keep(tag, top=top)]
    if bulk is not None:
        tags = sorted({*tags, BaseTag(bulk.tag)})
    for group, members in itertools.groupby(tags, key=lambda tag: tag.group):
        parts: list[Part] = []
        for tag in members:
            if bulk is not None and tag == bulk.tag:
                parts.append(bulk)
                continue
            elem = ds[tag]
            if not (fmt.drop_empty and _is_empty(elem)):
                parts.append(_encode_element(elem, fmt, charset))
        yield from _with_group_length(parts, group, fmt)


def _keep(tag: BaseTag, *, top: bool) -> bool:
    # Group lengths are written anew or not at all; Length to End is retired and would lie.
    if tag.element == 0 or tag == _LENGTH_TO_END:
        return False
    return not (top and tag.group == 2)


def _with_group_length(parts: list[Part], group: int, fmt: Format) -> Iterator[Part]:
    if fmt.group_lengths and parts:
        size = sum(p.encoded_size(fmt) if isinstance(p, BulkElement) else len(p) for p in parts)
        if size <= 0xFFFFFFFF:
            yield fmt.header(group << 16, "UL", 4) + fmt.ul(size)
    yield from parts


def _is_empty(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return len(elem.value) == 0
    return bool(elem.is_empty)


def _encode_element(elem: DataElement, fmt: Format, charset: str | list[str] | None) -> bytes:
    if elem.VR == "SQ":
        return _encode_sequence(elem, fmt, charset)
    if fmt.swap_bulk and elem.VR in _WORD_SIZE and isinstance(elem.value, bytes):
        width = _WORD_SIZE[elem.VR]
        usable = len(elem.value) - len(elem.value) % width
        words = np.frombuffer(elem.value, dtype=f"<u{width}", count=usable // width)
        value = words.byteswap().tobytes() + elem.value[usable:]
        elem = DataElement(elem.tag, elem.VR, value, is_undefined_length=False)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = fmt.little_endian, fmt.implicit_vr
    write_data_element(buffer, elem, charset)
    return buffer.getvalue()


def _encode_sequence(elem: DataElement, fmt: Format, charset: str | list[str] | None) -> bytes:
    items = [_encode_item(item, fmt, charset) for item in elem.value]
    body = b"".join(items)
    if fmt.undefined_lengths:
        head = fmt.header(elem.tag, "SQ", _UNDEFINED)
        return head + body + fmt.tag(_SEQUENCE_DELIMITER) + fmt.ul(0)
    return fmt.header(elem.tag, "SQ", len(body)) + body


def _encode_item(item: Dataset, fmt: Format, charset: str | list[str] | None) -> bytes:
    body = b"".join(p for p in _encode_body(item, fmt, charset) if isinstance(p, bytes))
    if fmt.undefined_lengths:
        return fmt.tag(_ITEM) + fmt.ul(_UNDEFINED) + body + fmt.tag(_ITEM_DELIMITER) + fmt.ul(0)
    return fmt.tag(_ITEM) + fmt.ul(len(body)) + body


def transfer_syntax_of(ds: Dataset) -> UID:
    """Return the Transfer Syntax UID `ds` is in (its File Meta, else its original encoding)."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(uid)
    implicit, little = ds.original_encoding
    if little is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else UID("1.2.840.10008.1.2.1")
