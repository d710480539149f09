"""Part 10 writing, header reading, records and the catalog's group-commit writer."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from xvactor.catalog.sqlite import count_instances, find_instance, open_catalog, write_batch
from xvactor.dicom.part10 import (
    FileMeta,
    dataset_offset,
    encode_file_meta,
    read_header,
)
from xvactor.dicom.records import InstanceRecord, record_from_header, valid_uid
from xvactor.dicom.status import CannotUnderstand
from xvactor.testing.datasets import make_dataset


def meta_for(ds: pydicom.Dataset, ts: str) -> FileMeta:
    return FileMeta(
        sop_class_uid=ds.SOPClassUID,
        sop_instance_uid=ds.SOPInstanceUID,
        transfer_syntax_uid=ts,
        implementation_class_uid="1.2.840.114384",
        implementation_version_name="XVACTOR_010",
        source_ae_title="MODALITY",
    )


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_our_meta_plus_received_bytes_is_a_part10_file_with_a_readable_header(
    tmp_path: Path, ts: str
) -> None:
    ds = make_dataset(patient_name="Müller^Jürgen")
    ds.file_meta.TransferSyntaxUID = ts
    received = io.BytesIO()
    ds.save_as(received, enforce_file_format=True)
    src = received.getvalue()
    dataset = src[dataset_offset(io.BytesIO(src)) :]

    path = tmp_path / "spooled.dcm"
    meta = encode_file_meta(meta_for(ds, ts))
    path.write_bytes(meta + dataset)

    offset = dataset_offset(io.BytesIO(path.read_bytes()))
    assert offset == len(meta)
    back = pydicom.dcmread(path)
    assert back.file_meta.ImplementationClassUID == "1.2.840.114384"
    assert back.file_meta.SourceApplicationEntityTitle == "MODALITY"
    assert back.file_meta.TransferSyntaxUID == ts
    assert str(back.PatientName) == "Müller^Jürgen"

    header = read_header(path, offset, ts)
    assert dataset.startswith(header.raw)
    assert dataset[len(header.raw) : len(header.raw) + 4] == b"\xe0\x7f\x10\x00"
    assert str(header.dataset.PatientName) == "Müller^Jürgen"


def test_dataset_offset_rejects_non_part10() -> None:
    with pytest.raises(ValueError, match="Part 10"):
        dataset_offset(io.BytesIO(b"\x00" * 200))


@pytest.mark.parametrize("source_ae", ["MODALITY", "ODD", ""])
def test_encode_file_meta_equals_pydicoms_encoding(source_ae: str) -> None:
    meta = FileMeta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.826.0.1.3680043.8.498.123",  # odd length: padded
        transfer_syntax_uid=ExplicitVRLittleEndian,
        implementation_class_uid="1.2.840.114384",
        implementation_version_name="XVACTOR_01",
        source_ae_title=source_ae,
    )
    file_meta = FileMetaDataset()
    file_meta.FileMetaInformationVersion = b"\x00\x01"
    file_meta.MediaStorageSOPClassUID = meta.sop_class_uid
    file_meta.MediaStorageSOPInstanceUID = meta.sop_instance_uid
    file_meta.TransferSyntaxUID = meta.transfer_syntax_uid
    file_meta.ImplementationClassUID = meta.implementation_class_uid
    file_meta.ImplementationVersionName = meta.implementation_version_name
    if source_ae:
        file_meta.SourceApplicationEntityTitle = source_ae
    expected = io.BytesIO()
    expected.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(expected, file_meta, enforce_standard=True)  # type: ignore[arg-type]
    assert encode_file_meta(meta) == expected.getvalue()


def test_encode_file_meta_has_group_length() -> None:
    encoded = encode_file_meta(meta_for(make_dataset(), ExplicitVRLittleEndian))
    assert dataset_offset(io.BytesIO(encoded + b"\x00" * 16)) == len(encoded)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("1.2.3", True), ("1.02.3", False), ("", False), ("1." * 40, False), ("1.2.a", False)],
)
def test_valid_uid(value: str, ok: bool) -> None:
    assert valid_uid(value) is ok


def record(ds: pydicom.Dataset, path: str = "p") -> InstanceRecord:
    return record_from_header(
        ds,
        affected_sop_class_uid=ds.SOPClassUID,
        affected_sop_instance_uid=ds.SOPInstanceUID,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        path=path,
        size=1,
        dataset_offset=0,
        calling_ae_title="A",
        received_at=0.0,
        header=b"",
    )


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_record_refuses_mismatched_or_missing_uids() -> None:
    ds = make_dataset()
    with pytest.raises(CannotUnderstand, match="AffectedSOPInstanceUID"):
        record_from_header(
            ds,
            affected_sop_class_uid=ds.SOPClassUID,
            affected_sop_instance_uid="1.2.3",
            transfer_syntax_uid=ExplicitVRLittleEndian,
            path="",
            size=0,
            dataset_offset=0,
            calling_ae_title="",
            received_at=0.0,
            header=b"",
        )
    ds.SeriesInstanceUID = "../../etc"
    with pytest.raises(CannotUnderstand, match="SeriesInstanceUID"):
        record(ds)


def test_write_batch_one_transaction_with_duplicates(tmp_path: Path) -> None:
    conn = open_catalog(tmp_path / "c.sqlite")
    a, b = make_dataset(), make_dataset()
    outcomes = write_batch(conn, [(record(a, "a1"), False), (record(b), False)])
    assert [o.written for o in outcomes if not isinstance(o, Exception)] == [True, True]
    again = write_batch(conn, [(record(a, "a2"), False), (record(a, "a3"), True)])
    assert again[0] == again[0].__class__(existed=True, previous_path="a1", written=False)
    assert again[1] == again[1].__class__(existed=True, previous_path="a1", written=True)
    assert count_instances(conn) == 2
    found = find_instance(conn, a.SOPInstanceUID)
    assert found is not None
    assert found.path == "a3"
    assert find_instance(conn, "9.9") is None


def test_write_batch_failure_rolls_back_everything(tmp_path: Path) -> None:
    conn = open_catalog(tmp_path / "c.sqlite")

    bad = record(make_dataset())
    conn.execute("DROP TABLE series")  # every insert in the batch now fails
    outcomes = write_batch(conn, [(bad, False)])
    assert isinstance(outcomes[0], sqlite3.DatabaseError)
    assert conn.execute("SELECT COUNT(*) FROM patients").fetchone()[0] == 0


def test_catalog_reopens_and_refuses_unknown_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    open_catalog(path).close()
    open_catalog(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        open_catalog(path)


def _pydicom_text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize(
    "name",
    ["Müller^Jürgen", "Doe^John^^Dr", "", "Ödön=Ö^Ü"],
    ids=["latin1", "ascii", "empty", "groups"],
)
def test_record_from_raw_bytes_equals_pydicoms_values(tmp_path: Path, ts: str, name: str) -> None:
    ds = make_dataset(patient_name=name or "X", character_set="ISO_IR 100")
    ds.PatientName = name
    ds.StudyDescription = "Thorax  "
    ds.AccessionNumber = ""
    ds.SeriesNumber = 12
    ds.ReferringPhysicianName = "Weiß^Ärztin"
    ds.file_meta.TransferSyntaxUID = ts
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    with path.open("rb") as fp:
        offset = dataset_offset(fp)
    header = read_header(path, offset, ts)
    built = record(header.dataset)
    decoded = pydicom.dcmread(path)
    for field, keyword in [
        ("patient_name", "PatientName"),
        ("patient_id", "PatientID"),
        ("study_description", "StudyDescription"),
        ("accession_number", "AccessionNumber"),
        ("series_number", "SeriesNumber"),
        ("referring_physician_name", "ReferringPhysicianName"),
        ("study_date", "StudyDate"),
        ("modality", "Modality"),
        ("specific_character_set", "SpecificCharacterSet"),
        ("study_instance_uid", "StudyInstanceUID"),
    ]:
        assert getattr(built, field) == _pydicom_text(decoded, keyword), field


def test_a_patient_is_updated_when_changed_and_left_alone_when_not(tmp_path: Path) -> None:
    conn = open_catalog(tmp_path / "catalog.sqlite")
    first = make_dataset()
    first.PatientName = "Müller^Jürgen"
    write_batch(conn, [(record(first, "a"), False)])
    same = make_dataset()
    same.PatientID, same.PatientName = first.PatientID, first.PatientName
    same.PatientBirthDate, same.PatientSex = first.PatientBirthDate, first.PatientSex
    before = conn.total_changes
    write_batch(conn, [(record(same, "b"), False)])
    # The instance, its study and its series rows only: the patient row is not rewritten.
    new_rows = conn.total_changes - before
    renamed = make_dataset()
    renamed.PatientID, renamed.PatientName = first.PatientID, "Müller^Jürgen Karl"
    renamed.PatientBirthDate, renamed.PatientSex = first.PatientBirthDate, first.PatientSex
    before = conn.total_changes
    write_batch(conn, [(record(renamed, "c"), False)])
    assert conn.total_changes - before == new_rows + 1  # now the patient row changes too
    names = conn.execute("SELECT patient_name FROM patients").fetchall()
    assert names == [("Müller^Jürgen Karl",)]
    conn.close()
