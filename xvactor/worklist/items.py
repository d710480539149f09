"""A Modality Worklist item: its checks, its indexed keys and its stored encoding.

One item is one Scheduled Procedure Step (PS3.4 Section K.6.1.2: a worklist response
describes one step), so an item must carry a Scheduled Procedure Step Sequence (0040,0100)
with exactly one Item.  The Type 1 return keys of PS3.4 Table K.6-1 that identify the step
and that modalities select on must have a value (as DCMTK's ``wlmscpfs`` demands of its
``.wl`` files); the single-valued ones (VM 1 in PS3.6) must not hold several values.

The item is stored as Explicit VR Little Endian bytes, untouched otherwise; the indexed
keys are read from those bytes (raw values, decoded with the item's own Specific Character
Set, padding removed as PS3.5 Section 6.2 allows) so no value conversion can fail later.
"""

from __future__ import annotations

import copy
import io
import re
import time
from dataclasses import dataclass

from pydicom.charset import decode_bytes, python_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue

from xvactor.dicom.records import valid_uid

__all__ = [
    "SPS_SEQUENCE",
    "IndexedItem",
    "WorklistItemError",
    "date_bounds",
    "decode_item",
    "encode_item",
    "index_item",
    "time_bounds",
]

#: Scheduled Procedure Step Sequence (0040,0100).
SPS_SEQUENCE = 0x00400100

_CHARSET = 0x00080005
_TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UC", "UT"})
_PN_DELIMITERS = {0x5C, 0x3D, 0x5E}
_TEXT_DELIMITERS = {0x5C}
_DATE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")  # ACR-NEMA dots tolerated
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
# Earliest and latest digits of HHMMSSFFFFFF, for padding a reduced-precision time.
_TIME_MIN = "000000000000"
_TIME_MAX = "235959999999"

# (tag, keyword, VR) of the keys each item must have and the index holds.
_TOP = (
    (0x00100020, "PatientID", "LO"),
    (0x00100010, "PatientName", "PN"),
    (0x00080050, "AccessionNumber", "SH"),
    (0x00401001, "RequestedProcedureID", "SH"),
    (0x0020000D, "StudyInstanceUID", "UI"),
)
_STEP = (
    (0x00400001, "ScheduledStationAETitle", "AE"),
    (0x00400002, "ScheduledProcedureStepStartDate", "DA"),
    (0x00400003, "ScheduledProcedureStepStartTime", "TM"),
    (0x00080060, "Modality", "CS"),
    (0x00400006, "ScheduledPerformingPhysicianName", "PN"),
    (0x00400009, "ScheduledProcedureStepID", "SH"),
)
# Type 2 in PS3.4 Table K.6-1: present in responses, possibly empty.
_MAY_BE_EMPTY = frozenset({"AccessionNumber", "ScheduledPerformingPhysicianName"})
_MULTI_VALUED = frozenset({"ScheduledStationAETitle"})  # VM 1-n in PS3.6


class WorklistItemError(ValueError):
    """A dataset that cannot be a worklist item; the message is one line for the user."""


@dataclass(frozen=True)
class IndexedItem:
    """A checked worklist item: its indexed keys and its stored bytes."""

    patient_id: str
    patient_name: str
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    scheduled_station_ae_titles: tuple[str, ...]
    start_date: str
    """SPS Start Date as ``YYYYMMDD``."""
    start_time: str
    """SPS Start Time as given (padding removed)."""
    modality: str
    performing_physician_name: str
    sps_id: str
    specific_character_set: str
    dataset: bytes
    """The whole item, Explicit VR Little Endian, no File Meta Information."""
    added_at: float


def _encodings(charset: str) -> list[str]:
    terms = [term.strip() for term in charset.split("\\")] if charset else [""]
    codecs = []
    for term in terms:
        codec = python_encoding.get(term)
        if codec is None:
            msg = f"unknown Specific Character Set term {term!r}"
            raise WorklistItemError(msg)
        codecs.append(codec)
    return list(dict.fromkeys(codecs))


def _values(ds: Dataset, tag: int, vr: str, encodings: list[str]) -> list[str]:
    """The element's values as text, padding removed, empty values dropped."""
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return []
    if isinstance(elem, RawDataElement):
        raw = bytes(elem.value)
        if vr in _TEXT_VRS:
            delimiters = _PN_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS
            text = decode_bytes(raw, encodings, delimiters)
        else:
            text = raw.decode("ascii", errors="replace")
        parts = text.split("\\")
    elif isinstance(elem.value, MultiValue | list | tuple):
        parts = [str(value) for value in elem.value]
    else:
        parts = str(elem.value).split("\\")
    stripped = (part.rstrip(" \x00") if vr == "PN" else part.strip(" \x00") for part in parts)
    return [part for part in stripped if part]


def encode_item(ds: Dataset) -> bytes:
    """Encode ``ds`` as Explicit VR Little Endian bytes, File Meta Information left out."""
    out = copy.copy(ds)  # shallow: deleting here leaves ``ds`` whole, nothing is converted
    for tag in list(out.keys()):
        if tag.group == 0x0002 or tag.element == 0x0000:
            del out[tag]
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, out)
    return fp.getvalue()


def decode_item(data: bytes) -> Dataset:
    """Read back what :func:`encode_item` wrote (values are converted lazily)."""
    return read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def index_item(ds: Dataset) -> IndexedItem:
    """Check ``ds`` as a worklist item and return its indexed keys and stored bytes.

    Raises
    ------
    WorklistItemError
        With a one-line reason: no Scheduled Procedure Step Sequence with exactly one
        Item, a required key empty, a VM 1 key with several values, a malformed SPS Start
        Date or Time or Study Instance UID, an unknown Specific Character Set.
    """
    # The character set first: pydicom would encode with a default in its place.
    _encodings("\\".join(_values(ds, _CHARSET, "CS", ["ascii"])))
    try:
        data = encode_item(ds)
        stored = decode_item(data)
        return _index(stored, data)
    except WorklistItemError:
        raise
    except Exception as exc:  # pydicom converts lazily: any malformed element lands here
        msg = f"cannot encode or decode the dataset: {exc}".splitlines()[0]
        raise WorklistItemError(msg) from exc


def _index(stored: Dataset, data: bytes) -> IndexedItem:
    charset = "\\".join(_values(stored, _CHARSET, "CS", ["ascii"]))
    encodings = _encodings(charset)
    sps = stored.get(SPS_SEQUENCE)
    if sps is None or sps.VR != "SQ" or len(sps.value) != 1:
        msg = "needs a ScheduledProcedureStepSequence with exactly one item"
        if sps is not None and sps.VR == "SQ":
            msg += f", it has {len(sps.value)}"
        raise WorklistItemError(msg)
    step = sps.value[0]
    found: dict[str, list[str]] = {}
    for source, keys in ((stored, _TOP), (step, _STEP)):
        for tag, keyword, vr in keys:
            values = _values(source, tag, vr, encodings)
            if not values and keyword not in _MAY_BE_EMPTY:
                raise WorklistItemError(f"{keyword} is missing or empty")
            if len(values) > 1 and keyword not in _MULTI_VALUED:
                raise WorklistItemError(f"{keyword} has {len(values)} values, PS3.6 allows 1")
            found[keyword] = values
    one = {keyword: values[0] if values else "" for keyword, values in found.items()}
    if date_bounds(one["ScheduledProcedureStepStartDate"]) is None:
        raise WorklistItemError("ScheduledProcedureStepStartDate is not a date (YYYYMMDD)")
    if time_bounds(one["ScheduledProcedureStepStartTime"]) is None:
        raise WorklistItemError("ScheduledProcedureStepStartTime is not a time (HHMMSS.FFFFFF)")
    if not valid_uid(one["StudyInstanceUID"]):
        raise WorklistItemError("StudyInstanceUID is not a valid UID")
    return IndexedItem(
        patient_id=one["PatientID"],
        patient_name=one["PatientName"],
        accession_number=one["AccessionNumber"],
        requested_procedure_id=one["RequestedProcedureID"],
        study_instance_uid=one["StudyInstanceUID"],
        scheduled_station_ae_titles=tuple(found["ScheduledStationAETitle"]),
        start_date=one["ScheduledProcedureStepStartDate"].replace(".", ""),
        start_time=one["ScheduledProcedureStepStartTime"],
        modality=one["Modality"],
        performing_physician_name=one["ScheduledPerformingPhysicianName"],
        sps_id=one["ScheduledProcedureStepID"],
        specific_character_set=charset,
        dataset=data,
        added_at=time.time(),
    )


def date_bounds(value: str) -> tuple[str, str] | None:
    """A DA value (``YYYYMMDD``, ACR-NEMA ``YYYY.MM.DD``) as itself twice, or ``None``."""
    match = _DATE.match(value.strip())
    if match is None:
        return None
    digits = "".join(match.groups())
    return digits, digits


def time_bounds(value: str) -> tuple[str, str] | None:
    """A TM value as the earliest and latest ``HHMMSSFFFFFF`` it can stand for.

    ``10`` is 10:00:00.000000 to 10:59:59.999999 (PS3.4 C.2.2.2.5 pads a reduced-precision
    bound so a range includes its end points); ACR-NEMA colons are tolerated.  ``None``
    when ``value`` is not a time.
    """
    text = value.strip().replace(":", "")
    if _TIME.match(text) is None:
        return None
    digits = text.replace(".", "")
    return digits + _TIME_MIN[len(digits) :], digits + _TIME_MAX[len(digits) :]
