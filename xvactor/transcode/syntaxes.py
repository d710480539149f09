"""The transfer syntaxes xvactor converts between, their properties and their CLI names.

The eight syntaxes of the conformance target (Implicit VR LE, Explicit VR LE, Explicit VR
BE, RLE Lossless, JPEG Baseline, JPEG Lossless Process 14, JPEG 2000 Lossless, JPEG 2000)
can be read and written; two more JPEG syntaxes DCMTK writes by default (JPEG Extended
12 bit and JPEG Lossless SV1) can be read only. PS3.5 Section 10 and Annex A.
"""

from __future__ import annotations

from typing import Final

from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)

from xvactor.transcode.errors import TranscodeError

__all__ = [
    "ENCODABLE",
    "J2K_FAMILY",
    "JPEG_FAMILY",
    "LOSSY",
    "NATIVE",
    "NEW_LOSSY_METHOD",
    "READABLE",
    "is_lossy",
    "is_native",
    "name_of",
    "resolve",
]

#: Uncompressed (native) syntaxes, PS3.5 Section A.1-A.3, in order of preference.
NATIVE: Final = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)

#: Syntaxes xvactor writes: the conformance target's eight.
ENCODABLE: Final = (
    *NATIVE,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEG2000Lossless,
    JPEG2000,
)

#: Syntaxes xvactor reads: the eight plus JPEG Extended and JPEG Lossless SV1 (DCMTK's
#: ``dcmcjpeg`` defaults for 12 bit lossy and lossless images).
READABLE: Final = frozenset({*ENCODABLE, JPEGExtended12Bit, JPEGLosslessSV1})

#: Lossy syntaxes among :data:`READABLE`.
LOSSY: Final = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000})

#: ISO 10918 (JPEG) syntaxes and ISO 15444 (JPEG 2000) syntaxes among :data:`READABLE`.
JPEG_FAMILY: Final = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1})
J2K_FAMILY: Final = frozenset({JPEG2000Lossless, JPEG2000})

#: Lossy Image Compression Method (0028,2114) defined terms, PS3.3 C.7.6.1.1.5.1.
NEW_LOSSY_METHOD: Final = {JPEGBaseline8Bit: "ISO_10918_1", JPEG2000: "ISO_15444_1"}

_NAMES: Final = {
    ImplicitVRLittleEndian: ("implicit-le", "implicit", "ile"),
    ExplicitVRLittleEndian: ("explicit-le", "explicit", "ele", "little-endian"),
    ExplicitVRBigEndian: ("explicit-be", "big-endian", "ebe"),
    RLELossless: ("rle", "rle-lossless"),
    JPEGBaseline8Bit: ("jpeg-baseline", "baseline", "jpeg"),
    JPEGLossless: ("jpeg-lossless", "jpeg-ll", "process-14"),
    JPEG2000Lossless: ("j2k-lossless", "jpeg2000-lossless", "jp2k-lossless"),
    JPEG2000: ("j2k", "jpeg2000", "jp2k"),
}
_BY_NAME: Final = {
    alias: uid for uid, aliases in _NAMES.items() for alias in (*aliases, uid.keyword.lower())
}


def resolve(name_or_uid: str) -> UID:
    """Return the UID of one of the eight syntaxes xvactor writes.

    Parameters
    ----------
    name_or_uid : str
        A UID (``"1.2.840.10008.1.2.4.90"``), a pydicom keyword
        (``"JPEG2000Lossless"``, any case) or a short name: ``implicit-le``,
        ``explicit-le``, ``explicit-be``, ``rle``, ``jpeg-baseline``, ``jpeg-lossless``,
        ``j2k-lossless``, ``j2k``.

    Raises
    ------
    TranscodeError
        If it names none of them.
    """
    text = name_or_uid.strip()
    uid = _BY_NAME.get(text.lower().replace("_", "-"))
    if uid is None and text in ENCODABLE:
        uid = UID(text)
    if uid is None:
        names = ", ".join(aliases[0] for aliases in _NAMES.values())
        msg = f"unknown or unsupported transfer syntax {text!r}: use a UID or one of {names}"
        raise TranscodeError(msg)
    return uid


def name_of(uid: str) -> str:
    """Return ``"<UID name> (<UID>)"``, e.g. ``"JPEG Baseline (Process 1) (1.2...4.50)"``."""
    return f"{UID(uid).name} ({uid})"


def is_native(uid: str) -> bool:
    """Return whether `uid` is an uncompressed syntax (Pixel Data not encapsulated)."""
    return uid in NATIVE


def is_lossy(uid: str) -> bool:
    """Return whether `uid` is a lossy compression syntax."""
    return uid in LOSSY
