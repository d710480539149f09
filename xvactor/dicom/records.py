"""The catalog's view of an instance: the PS3.4 C.6 keys of every level, from its header.

Patient level (C.6.1.1.2), study level (C.6.1.1.3 / C.6.2.1.2), series level (C.6.1.1.4) and
composite object instance level (C.6.1.1.5) keys are columns; the whole header (without
bulk data) travels alongside as raw bytes, so any other attribute can be matched later.
"""

from __future__ import annotations

import re

import msgspec
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from xvactor.dicom.status import CannotUnderstand

__all__ = ["InstanceRecord", "record_from_header", "valid_uid"]

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


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)


def record_from_header(
    ds: Dataset,
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

    Raises
    ------
    CannotUnderstand
        When a UID needed to file the instance is missing or malformed, or the dataset's
        SOP Instance UID differs from the command's Affected SOP Instance UID.
    """
    try:
        values = {
            "patient_id": _text(ds, "PatientID"),
            "patient_name": _text(ds, "PatientName"),
            "patient_birth_date": _text(ds, "PatientBirthDate"),
            "patient_sex": _text(ds, "PatientSex"),
            "study_instance_uid": _text(ds, "StudyInstanceUID"),
            "study_date": _text(ds, "StudyDate"),
            "study_time": _text(ds, "StudyTime"),
            "accession_number": _text(ds, "AccessionNumber"),
            "study_id": _text(ds, "StudyID"),
            "referring_physician_name": _text(ds, "ReferringPhysicianName"),
            "study_description": _text(ds, "StudyDescription"),
            "series_instance_uid": _text(ds, "SeriesInstanceUID"),
            "modality": _text(ds, "Modality"),
            "series_number": _text(ds, "SeriesNumber"),
            "series_description": _text(ds, "SeriesDescription"),
            "sop_instance_uid": _text(ds, "SOPInstanceUID"),
            "instance_number": _text(ds, "InstanceNumber"),
            "specific_character_set": _text(ds, "SpecificCharacterSet"),
        }
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
