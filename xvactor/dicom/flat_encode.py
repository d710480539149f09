"""A fast encoder for C-FIND response identifiers: text, numbers and sequences of them.

pydicom's ``write_dataset`` costs about as much as finding the match itself for a small
response Identifier.  This writes the same bytes (PS3.5 Section 7.1: tag, VR, length,
value; Section 7.5: sequences and items of defined length, as pydicom writes them;
Section 6.2: padding; Section 6.1: character repertoires) for the common case and
returns ``None`` for anything else, which the caller then encodes with pydicom: binary
bulk VRs, a big endian or deflated syntax, a character set other than the default,
ISO-IR 100 or UTF-8, or a value of an unexpected type.  Tests compare every case with
pydicom's own encoding.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

__all__ = ["encode_flat"]

_LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR",
     "UT", "UI"}
)  # fmt: skip
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_BINARY = {"US": "<H", "UL": "<I", "SS": "<h", "SL": "<i", "FL": "<f", "FD": "<d"}
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf-8"}


def _texts(value: object) -> Iterable[str] | None:
    if value is None:
        return ()
    if isinstance(value, str | PersonName | int | float):
        return (str(value),)
    if isinstance(value, MultiValue | list | tuple):
        items = list(value)
        if all(isinstance(item, str | PersonName | int | float) for item in items):
            return [str(item) for item in items]
    return None


def _value(vr: str, value: object, codec: str) -> bytes | None:
    if vr in _BINARY:
        if value is None:
            return b""
        items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        try:
            return b"".join(struct.pack(_BINARY[vr], item) for item in items)
        except (struct.error, TypeError):
            return None
    if vr not in _TEXT_VRS:
        return None
    texts = _texts(value)
    if texts is None:
        return None
    joined = "\\".join(texts)
    try:
        raw = joined.encode(codec if vr in _CHARSET_VRS else "ascii")
    except UnicodeEncodeError:
        return None
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def _elements(ds: Dataset, codec: str, implicit_vr: bool, parts: list[bytes]) -> bool:
    for elem in ds:
        vr = elem.VR
        group, element = elem.tag >> 16, elem.tag & 0xFFFF
        if vr == "SQ":
            items: list[bytes] = []
            for item in elem.value or ():
                if "SpecificCharacterSet" in item:
                    return False  # an item with its own repertoire: pydicom's job
                body: list[bytes] = []
                if not _elements(item, codec, implicit_vr, body):
                    return False
                encoded = b"".join(body)
                items.append(struct.pack("<HHI", 0xFFFE, 0xE000, len(encoded)) + encoded)
            value = b"".join(items)
            if implicit_vr:
                parts.append(struct.pack("<HHI", group, element, len(value)))
            else:
                parts.append(struct.pack("<HH2sHI", group, element, b"SQ", 0, len(value)))
            parts.append(value)
            continue
        raw = _value(vr, elem.value, codec)
        if raw is None:
            return False
        if implicit_vr:
            parts.append(struct.pack("<HHI", group, element, len(raw)))
        elif vr in _LONG_LENGTH_VRS:
            parts.append(struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(raw)))
        else:
            if len(raw) > 0xFFFF:
                return False
            parts.append(struct.pack("<HH2sH", group, element, vr.encode(), len(raw)))
        parts.append(raw)
    return True


def encode_flat(ds: Dataset, *, implicit_vr: bool) -> bytes | None:
    """``ds`` in Implicit or Explicit VR Little Endian, or ``None`` if not simple enough."""
    charset = ds.get("SpecificCharacterSet", "") or ""
    if not isinstance(charset, str):
        return None
    codec = _CODECS.get(charset.strip())
    if codec is None:
        return None
    parts: list[bytes] = []
    if not _elements(ds, codec, implicit_vr, parts):
        return None
    return b"".join(parts)
