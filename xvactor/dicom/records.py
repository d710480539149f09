"""The catalog's view of an instance: the PS3.4 C.6 keys of every level, from its header.

Patient level (C.6.1.1.2), study level (C.6.1.1.3 / C.6.2.1.2), series level (C.6.1.1.4) and
composite object instance level (C.6.1.1.5) keys are columns; the whole header (without
bulk data) travels alongside as raw bytes, so any other attribute can be matched later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec
from pydicom.charset import decode_bytes, python_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from xvactor.dicom.status import CannotUnderstand

__all__ = ["KEY_TAGS", "InstanceRecord", "record_from_header", "valid_uid"]

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def valid_uid(value: str) -> bool:
    """PS3.5 Section 9.1: digits and dots, no leading zeros, at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.match(value) is not None


class InstanceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One received instance, as the catalog indexes it."""

    # Patient level
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    # Study level
    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    referring_physician_name: str
    study_description: str
    # Series level
    series_instance_uid: str
    modality: str
    series_number: str
    series_description: str
    # Instance level
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: str
    specific_character_set: str
    transfer_syntax_uid: str
    # Where and how it arrived
    path: str
    """Relative to the data directory."""
    size: int
    dataset_offset: int
    calling_ae_title: str
    received_at: float
    header: bytes
    """The dataset's bytes up to its bulk data, in ``transfer_syntax_uid``."""


# (keyword, tag, VR) of every indexed key; VRs from PS3.6, needed for implicit VR data.
_KEYS: tuple[tuple[str, int, str], ...] = (
    ("patient_id", 0x00100020, "LO"),
    ("patient_name", 0x00100010, "PN"),
    ("patient_birth_date", 0x00100030, "DA"),
    ("patient_sex", 0x00100040, "CS"),
    ("study_instance_uid", 0x0020000D, "UI"),
    ("study_date", 0x00080020, "DA"),
    ("study_time", 0x00080030, "TM"),
    ("accession_number", 0x00080050, "SH"),
    ("study_id", 0x00200010, "SH"),
    ("referring_physician_name", 0x00080090, "PN"),
    ("study_description", 0x00081030, "LO"),
    ("series_instance_uid", 0x0020000E, "UI"),
    ("modality", 0x00080060, "CS"),
    ("series_number", 0x00200011, "IS"),
    ("series_description", 0x0008103E, "LO"),
    ("sop_instance_uid", 0x00080018, "UI"),
    ("instance_number", 0x00200013, "IS"),
    ("specific_character_set", 0x00080005, "CS"),
)
KEY_TAGS = frozenset(tag for _, tag, _ in _KEYS)
"""The tags whose raw values :func:`record_from_header` reads (character set included)."""
_CHARACTER_SET_VRS = frozenset({"PN", "LO", "SH"})
_PN_DELIMITERS = {0x5C, 0x3D, 0x5E}  # backslash, =, ^ (PS3.5 6.2, 6.1.2.5.3)
_TEXT_DELIMITERS = {0x5C}


def _encodings(charset: str) -> list[str]:
    """Python codecs for a Specific Character Set (PS3.3 C.12.1.1.2), best effort.

    An unknown term is not a reason to refuse an instance: its text is read as Latin-1
    (every byte maps to a character), and the instance is stored untouched.
    """
    terms = [term.strip() for term in charset.split("\\")] if charset else [""]
    codecs = [python_encoding.get(term) for term in terms]
    if any(codec is None for codec in codecs):
        return ["latin_1"]
    return list(dict.fromkeys(codec for codec in codecs if codec is not None))


def _decode(raw: bytes, vr: str, encodings: list[str]) -> str:
    """A raw value as text, values separated by backslashes, padding removed (PS3.5 6.2)."""
    if vr in _CHARACTER_SET_VRS:
        if len(encodings) == 1:  # no code extensions: undecodable bytes become U+FFFD
            text = raw.decode(encodings[0], errors="replace")
        else:
            delimiters = _PN_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS
            text = decode_bytes(raw, encodings, delimiters)
        return "\\".join(part.rstrip(" \x00") for part in text.split("\\")).rstrip("\\")
    text = raw.decode("ascii", errors="replace")
    return "\\".join(part.strip(" \x00") for part in text.split("\\")).rstrip("\\")


def _element_text(ds: Dataset, tag: int, vr: str, encodings: list[str]) -> str:
    element = ds.get_item(tag)
    if element is None or element.value is None:
        return ""
    if isinstance(element, RawDataElement):
        return _decode(bytes(element.value), vr, encodings)
    value = element.value
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)


def _texts_from_raw(raw_values: Mapping[int, bytes]) -> dict[str, str]:
    """:func:`_texts` from raw value bytes (an absent tag reads as empty)."""
    charset = _decode(raw_values.get(0x00080005, b""), "CS", ["iso8859"])
    encodings = _encodings(charset)
    return {key: _decode(raw_values.get(tag, b""), vr, encodings) for key, tag, vr in _KEYS}


def _texts(ds: Dataset) -> dict[str, str]:
    """The indexed keys, read from the raw bytes (no value conversion or validation)."""
    charset = _element_text(ds, 0x00080005, "CS", ["iso8859"])
    encodings = _encodings(charset)
    return {key: _element_text(ds, tag, vr, encodings) for key, tag, vr in _KEYS}


def record_from_header(
    ds: Dataset | Mapping[int, bytes],
    *,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str,
    transfer_syntax_uid: str,
    path: str,
    size: int,
    dataset_offset: int,
    calling_ae_title: str,
    received_at: float,
    header: bytes,
) -> InstanceRecord:
    """Build the catalog record, checking what the node needs to file the instance.

    ``ds``: the dataset as pydicom read it, or the raw values of :data:`KEY_TAGS` as
    ``xvactor.dicom.scan`` found them.  ``header``: its bytes up to the bulk data.

    Raises
    ------
    CannotUnderstand
        When a UID needed to file the instance is missing or malformed, or the dataset's
        SOP Instance UID differs from the command's Affected SOP Instance UID.
    """
    try:
        values = _texts(ds) if isinstance(ds, Dataset) else _texts_from_raw(ds)
    except Exception as exc:  # pydicom converts lazily: any malformed element lands here
        raise CannotUnderstand(f"Cannot decode dataset: {exc}") from exc
    for keyword, key in (
        ("StudyInstanceUID", "study_instance_uid"),
        ("SeriesInstanceUID", "series_instance_uid"),
    ):
        if not valid_uid(values[key]):
            raise CannotUnderstand(f"{keyword} missing or not a valid UID")
    if values["sop_instance_uid"] != affected_sop_instance_uid:
        raise CannotUnderstand("SOPInstanceUID differs from AffectedSOPInstanceUID")
    if not valid_uid(affected_sop_instance_uid):
        raise CannotUnderstand("AffectedSOPInstanceUID is not a valid UID")
    return InstanceRecord(
        sop_class_uid=affected_sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        path=path,
        size=size,
        dataset_offset=dataset_offset,
        calling_ae_title=calling_ae_title,
        received_at=received_at,
        header=header,
        **values,
    )
