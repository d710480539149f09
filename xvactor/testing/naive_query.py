"""A naive C-FIND matcher over a list of instances, written straight from PS3.4 C.2.2.2.

The oracle of the property test of :mod:`xvactor.query`: it shares no code with it (no
SQL, no regular expressions, its own wild card and range logic), so both agreeing on
random catalogs and queries means something.  It is slow on purpose: every query walks
every instance.

The entity of a level is the first instance (in catalog order) that carries its unique
key, plus the computed keys of PS3.4 C.6.1.1 (Number of ... Related ..., Modalities in
Study, SOP Classes in Study).  The semantic choices :mod:`xvactor.query.matching`
documents are the same here: PN values lose trailing ``^``, ``=`` and spaces; PN matching
may fold case with ``str.casefold``; range bounds of reduced precision cover their whole
period; entity DA values must be 8 digits; a non-UI key with several values matches when
any of them does; an absent or empty entity value matches only universal keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from xvactor.dicom.records import InstanceRecord, record_from_header

__all__ = ["header_record", "naive_find"]

_UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
_WILD_VRS = ("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT")
_NOT_KEYS = ("SpecificCharacterSet", "QueryRetrieveLevel", "TimezoneOffsetFromUTC")


def _texts(elem: DataElement) -> list[str]:
    if elem.value is None:
        return []
    raw = elem.value
    values = list(raw) if isinstance(raw, MultiValue | list | tuple) else [raw]
    out = []
    for value in values:
        text = str(value)
        if elem.VR == "PN":
            while text and text[-1] in "^= ":
                text = text[:-1]
        elif elem.VR in ("AE", "CS", "DS", "IS", "LO", "SH", "UC", "DA", "TM", "DT", "UI"):
            text = text.strip(" \x00")
        else:
            text = text.rstrip(" \x00")
        if text:
            out.append(text)
    return out


def _wild(pattern: str, text: str) -> bool:
    """PS3.4 C.2.2.2.4 by dynamic programming: ``*`` any run, ``?`` one character."""
    reach = [True] + [False] * len(text)  # reach[j]: pattern so far matches text[:j]
    for p in pattern:
        if p == "*":
            seen = False
            for j in range(len(text) + 1):
                seen = seen or reach[j]
                reach[j] = seen
        else:
            reach = [False] + [reach[j] and (p in ("?", text[j])) for j in range(len(text))]
    return reach[len(text)]


def _time_micros(text: str, *, end: bool) -> int | None:
    """A TM value as microseconds of the day; a reduced precision ``end`` fills up."""
    whole, dot, fraction = text.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6) or (dot and len(whole) != 6):
        return None
    if dot and not (fraction.isdigit() and 1 <= len(fraction) <= 6):
        return None
    hours = int(whole[:2])
    minutes = int(whole[2:4]) if len(whole) >= 4 else (59 if end else 0)
    seconds = int(whole[4:6]) if len(whole) == 6 else (59 if end else 0)
    filled = fraction.ljust(6, "9" if end else "0") if dot else ("999999" if end else "0")
    micros = int(filled)
    return ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + micros


def _date_bound(text: str, *, end: bool) -> str | None:
    if not text.isdigit() or len(text) not in (4, 6, 8):
        return None
    return text + ("1231" if end else "0101")[len(text) - 4 :]


def _in_range(vr: str, key: str, value: str) -> bool:
    low_text, _, high_text = key.partition("-")
    if vr == "DA":
        if not (value.isdigit() and len(value) == 8):
            return False
        low = _date_bound(low_text, end=False) if low_text else "00000000"
        high = _date_bound(high_text, end=True) if high_text else "99999999"
        return low is not None and high is not None and low <= value <= high
    point = _time_micros(value, end=False)
    low_t = _time_micros(low_text, end=False) if low_text else 0
    high_t = _time_micros(high_text, end=True) if high_text else 10**12
    if point is None or low_t is None or high_t is None:
        return False
    return low_t <= point <= high_t


def _one(vr: str, key: str, value: str, fold: bool) -> bool:
    if vr in ("DA", "TM") and "-" in key:
        return bool(key.replace("-", "")) and _in_range(vr, key, value)
    if fold:
        key, value = key.casefold(), value.casefold()
    if vr in _WILD_VRS and ("*" in key or "?" in key):
        return _wild(key, value)
    if vr == "TM":
        a, b = _time_micros(key, end=False), _time_micros(value, end=False)
        return a is not None and a == b
    if vr in ("IS", "DS"):
        try:
            return float(key) == float(value)
        except ValueError:
            return key == value
    return key == value


def _universal(key: DataElement) -> bool:
    if key.VR == "SQ":
        if not key.value:
            return True
        return all(_universal(e) for e in key.value[0] if e.keyword not in _NOT_KEYS)
    texts = _texts(key)
    return not texts or (key.VR in _WILD_VRS and all(t.strip("*") == "" for t in texts))


def _matches(keys: Dataset, entity: Dataset, fold_names: bool) -> bool:
    for key in keys:
        if key.keyword in _NOT_KEYS or key.tag.group in (0, 2) or _universal(key):
            continue
        if key.tag not in entity:
            return False
        have = entity[key.tag]
        if key.VR == "SQ":
            if not any(_matches(key.value[0], item, fold_names) for item in have.value or []):
                return False
            continue
        fold = fold_names and key.VR == "PN"
        values = _texts(have)
        if not any(_one(key.VR, k, v, fold) for k in _texts(key) for v in values):
            return False
    return True


def _entities(instances: Sequence[Dataset], level: str) -> list[Dataset]:
    """One dataset per entity of ``level``: its first instance plus its computed keys."""
    unique = _UNIQUE[level]
    firsts: dict[str, Dataset] = {}
    for ds in instances:
        firsts.setdefault(str(ds.get(unique, "")), ds)
    entities = []
    for uid, first in firsts.items():
        entity = Dataset()
        entity.update(first)
        below = [ds for ds in instances if str(ds.get(unique, "")) == uid]
        studies = {ds.StudyInstanceUID for ds in below}
        series = {ds.SeriesInstanceUID for ds in below}
        if level == "PATIENT":
            entity.NumberOfPatientRelatedStudies = str(len(studies))
            entity.NumberOfPatientRelatedSeries = str(len(series))
            entity.NumberOfPatientRelatedInstances = str(len(below))
        elif level == "STUDY":
            entity.NumberOfStudyRelatedSeries = str(len(series))
            entity.NumberOfStudyRelatedInstances = str(len(below))
            entity.ModalitiesInStudy = sorted({ds.Modality for ds in below if ds.get("Modality")})
        elif level == "SERIES":
            entity.NumberOfSeriesRelatedInstances = str(len(below))
        entities.append(entity)
    return entities


def naive_find(
    instances: Sequence[Dataset],
    identifier: Dataset,
    *,
    case_insensitive_names: bool = False,
) -> list[Dataset]:
    """The entities at ``identifier.QueryRetrieveLevel`` that ``identifier`` matches.

    Parameters
    ----------
    instances : sequence of pydicom.dataset.Dataset
        The catalog, in the order it was filled.
    identifier : pydicom.dataset.Dataset
        The request Identifier (with Query/Retrieve Level).
    case_insensitive_names : bool, optional
        PN values match regardless of case.
    """
    level = str(identifier.QueryRetrieveLevel)
    return [
        entity
        for entity in _entities(instances, level)
        if _matches(identifier, entity, case_insensitive_names)
    ]


def header_record(
    ds: Dataset, *, implicit: bool = False, path: str | None = None
) -> InstanceRecord:
    """The catalog record of ``ds`` as the storage path would make it, header included.

    The header is ``ds`` without Pixel Data, encoded in Implicit or Explicit VR Little
    Endian; the path is ``path``, or made up (``"<SOP Instance UID>.dcm"``).
    """
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    header = Dataset()
    for elem in ds:
        if elem.tag < 0x7FE00010:
            header.add(elem)
    write_dataset(fp, header)
    return record_from_header(
        ds,
        affected_sop_class_uid=str(ds.SOPClassUID),
        affected_sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian,
        path=path if path is not None else f"{ds.SOPInstanceUID}.dcm",
        size=len(fp.getvalue()),
        dataset_offset=0,
        calling_ae_title="TEST",
        received_at=0.0,
        header=fp.getvalue(),
    )
