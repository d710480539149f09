"""Worklist items and queries for the worklist tests (no tests here).

Items are complete in DCMTK ``wlmscpfs``'s sense (it skips incomplete ``.wl`` files), so
the same files serve our catalog and the DCMTK cross-check.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MWL_FIND = "1.2.840.10008.5.1.4.31"


def make_item(
    n: int,
    *,
    patient_name: str = "Doe^John",
    patient_id: str | None = None,
    accession: str | None = None,
    requested_procedure_id: str | None = None,
    sps_id: str | None = None,
    stations: Iterable[str] = ("CT01",),
    date: str = "20240115",
    time: str = "083000",
    modality: str = "CT",
    physician: str = "Ross^Bob",
    charset: str | None = "ISO_IR 100",
) -> Dataset:
    """Worklist item number ``n``: one Scheduled Procedure Step with PS3.4 K.6 keys."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.AccessionNumber = accession if accession is not None else f"ACC{n:04d}"
    ds.PatientName = patient_name
    ds.PatientID = patient_id if patient_id is not None else f"PID{n:04d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid()
    ds.RequestingPhysician = "Who^Ordered"
    ds.RequestedProcedureDescription = f"Procedure {n}"
    ds.RequestedProcedureID = requested_procedure_id or f"RP{n:04d}"
    ds.RequestedProcedurePriority = "ROUTINE"
    step = Dataset()
    step.ScheduledStationAETitle = list(stations)
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = time
    step.Modality = modality
    step.ScheduledPerformingPhysicianName = physician
    step.ScheduledProcedureStepDescription = f"Step {n}"
    step.ScheduledStationName = "ROOM1"
    step.ScheduledProcedureStepLocation = "L1"
    step.ScheduledProcedureStepID = sps_id or f"SPS{n:04d}"
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def write_wl(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a PS3.10 file, as DCMTK's ``dump2dcm -g`` makes ``.wl`` files."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MWL_FIND
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def query(**step_keys: object) -> Dataset:
    """An MWL Identifier: return keys, plus ``step_keys`` in the SPS Sequence Item.

    Top-level matching keys go in with a ``top_`` prefix (``top_PatientName=...``).
    """
    keys = Dataset()
    keys.PatientName = ""
    keys.PatientID = ""
    keys.AccessionNumber = ""
    step = Dataset()
    step.ScheduledProcedureStepID = ""
    step.Modality = ""
    for name, value in step_keys.items():
        target = keys if name.startswith("top_") else step
        tag = tag_for_keyword(name.removeprefix("top_"))
        assert tag is not None, name
        # Wild cards and ranges are valid in keys, not in pydicom's checks of values.
        target.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))
    keys.ScheduledProcedureStepSequence = [step]
    return keys


def sps_ids(responses: Iterable[Dataset]) -> set[str]:
    """The Scheduled Procedure Step IDs of C-FIND responses."""
    return {
        str(item.ScheduledProcedureStepID)
        for response in responses
        for item in response.ScheduledProcedureStepSequence
    }
