"""De-identification with the Basic Profile of PS3.15 Table E.1-1 (xvactor.dicom.anonymize)."""

from __future__ import annotations

import copy
import io
import re
import string
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from xvactor.dicom.anonymize import (
    BASIC_PROFILE,
    DEIDENTIFICATION_METHOD,
    Action,
    Deidentifier,
    action_for,
)
from xvactor.testing.datasets import make_dataset

SECRET = b"xvactor-test-secret-0001"
MARK = "XQ"  # in every original text value; no replacement contains it (hex has no X or Q)
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


@pytest.fixture
def deid() -> Deidentifier:
    return Deidentifier(SECRET)


def code_item(value: str = f"{MARK}CODE") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "99XQ", f"{MARK} code"
    return item


def ref_item(uid: str, sop_class: str = CTImageStorage) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
    return item


def sample_value(tag: int, vr: str) -> Any:
    """A valid original value of `vr` that carries MARK where the VR can hold text."""
    text = f"{MARK}{tag:08X}"
    samples: dict[str, Any] = {
        "PN": f"{MARK}^Secret{tag:08X}",
        "DA": "20200102",
        "DT": "20200102101010",
        "TM": "101010",
        "AS": "042Y",
        "DS": "12.5",
        "IS": "42",
        "UI": f"1.2.826.0.1.9.{tag}",
        "UR": f"http://{MARK.lower()}.example/{text}",
        "AT": 0x00100010,
        # X/Z/U* keeps a reference sequence's items, but only its instance UIDs are listed
        "SQ": [ref_item("1.2.826.0.1.9.2")]
        if BASIC_PROFILE[tag] is Action.X_Z_U
        else [code_item()],
    }
    if vr in samples:
        return samples[vr]
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"):
        return f"{MARK}SECRET".encode()  # 8 bytes: a whole number of words of any width
    if vr in ("FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"):
        return 7
    return text  # AE CS LO LT SH ST UC UT


def table_dataset() -> tuple[Dataset, dict[int, tuple[str, Any]]]:
    """make_dataset() plus every single-tag attribute of Table E.1-1 that pydicom knows."""
    ds = make_dataset()
    originals: dict[int, tuple[str, Any]] = {}
    for tag in BASIC_PROFILE:
        if tag >> 16 in (0x0000, 0x0002):  # command set and File Meta: not dataset elements
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:  # newer than pydicom's dictionary
            continue
        value = sample_value(tag, vr)
        ds.add(DataElement(tag, vr, copy.deepcopy(value)))
        originals[tag] = (vr, value)
    return ds, originals


def texts(ds: Dataset) -> Iterator[str]:
    """Every value of `ds`, nested ones too, as text."""
    for elem in ds.iterall():
        if elem.VR != "SQ" and elem.value is not None:
            value = elem.value
            yield value.decode("latin-1") if isinstance(value, bytes) else str(value)


def is_empty(ds: Dataset, tag: int) -> bool:
    return tag not in ds or ds[tag].value in (None, "", b"", [])


def roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


Z_SEQUENCE = (Action.Z, Action.X_Z, Action.Z_D, Action.X_Z_D)  # a sequence is emptied


def test_every_attribute_of_table_e1_1_gets_its_action(deid: Deidentifier) -> None:
    ds, originals = table_dataset()
    assert len(originals) > 550  # nearly all of the table: pydicom knows its attributes
    deid.apply(ds)
    for tag, (vr, original) in originals.items():
        action, name = BASIC_PROFILE[tag], keyword_for_tag(tag) or f"{tag:08X}"
        if tag in (Tag("PatientName"), Tag("PatientID")):
            assert str(ds[tag].value).startswith("ANON"), name
        elif action is Action.X or (vr == "SQ" and action is Action.X_D):
            assert tag not in ds, name
        elif action in (Action.Z, Action.X_Z) or (vr == "SQ" and action in Z_SEQUENCE):
            assert is_empty(ds, tag), name
        elif action is Action.U or vr == "UI":  # X/Z/U* and D on a UID map it too
            assert ds[tag].value == deid.map_uid(original), name
        elif vr == "SQ":  # D keeps the items, X/Z/U* too
            (item,) = ds[tag].value
            if action is Action.X_Z_U:
                assert item.ReferencedSOPInstanceUID == deid.map_uid("1.2.826.0.1.9.2"), name
                assert item.ReferencedSOPClassUID == CTImageStorage, name
        else:  # a dummy for the VR, never the original
            assert tag in ds, name
            assert ds[tag].value not in (None, "", original), name
    assert not [text for text in texts(ds) if MARK in text]
    back = roundtrip(ds)
    assert not [text for text in texts(back) if MARK in text]
    assert back.PixelData == make_dataset().PixelData  # make_dataset(seed=0) is deterministic


KEY_ATTRIBUTES = {
    "PatientBirthDate": "19600101",
    "PatientAddress": "1 Secret Street",
    "PatientAge": "064Y",
    "OtherPatientIDs": ["OTHER1", "OTHER2"],
    "OtherPatientNames": "Alias^Secret",
    "PatientTelephoneNumbers": "555-0100",
    "InstitutionName": "Secret Hospital",
    "InstitutionAddress": "2 Secret Road",
    "ReferringPhysicianName": "Referrer^Secret",
    "PerformingPhysicianName": "Performer^Secret",
    "OperatorsName": "Operator^Secret",
    "AccessionNumber": "ACC0001",
    "StudyID": "STUDY77",
    "DeviceSerialNumber": "SN-4711",
    "StationName": "CTROOM3",
    "StudyDescription": "Secret description",
    "IssuerOfPatientID": "SECRETISSUER",
}


def rich_instance(**kwargs: Any) -> Dataset:
    """A CT image with the identifying attributes PS3.15 E.1-1 names, nested ones too."""
    ds = make_dataset(**kwargs)
    for keyword, value in KEY_ATTRIBUTES.items():
        setattr(ds, keyword, value)
    request = Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = "RP1", "SPS1"
    request.StudyInstanceUID = ds.StudyInstanceUID
    ds.RequestAttributesSequence = [request]
    ds.ReferencedStudySequence = [ref_item(ds.StudyInstanceUID, "1.2.840.10008.3.1.2.3.1")]
    ds.IrradiationEventUID = "1.2.826.0.1.9.77"
    ds.private_block(0x0009, "SECRET CREATOR", create=True).add_new(0x01, "LO", "Secret^Private")
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # Overlay Data, a repeating group
    return ds


def test_key_identifying_attributes_do_not_survive(deid: Deidentifier) -> None:
    ds = rich_instance(patient_name="Doe^Jane", patient_id="MRN123")
    deid.apply(ds)
    for keyword, original in KEY_ATTRIBUTES.items():
        value = ds.get(keyword)
        assert value is None or value in ("", []) or value != original, keyword
    for keyword in ("RequestAttributesSequence", "PatientAge", "OtherPatientIDs"):
        assert keyword not in ds
    assert ds.ReferencedStudySequence == []
    assert not ds.PatientBirthDate and not ds.AccessionNumber and not ds.StudyID
    assert 0x60003000 not in ds
    assert not [t for t in texts(ds) if "Secret" in t or t in ("Doe^Jane", "MRN123")]


def test_nested_sequences_are_processed_recursively(deid: Deidentifier) -> None:
    ds = make_dataset()
    series = Dataset()
    series.SeriesInstanceUID = ds.SeriesInstanceUID
    series.PatientName = ds.PatientName
    series.PerformingPhysicianName = "Nested^Physician"
    series.ReferencedInstanceSequence = [ref_item(ds.SOPInstanceUID)]
    series.private_block(0x0011, "NESTED CREATOR", create=True).add_new(0x01, "LO", "x")
    ds.ReferencedSeriesSequence = [series]  # not in Table E.1-1: kept, items cleaned
    ds.ReferencedImageSequence = [ref_item("1.2.826.0.1.9.1")]  # X/Z/U*
    content = Dataset()  # Content Sequence (D): free text inside goes, codes stay coded
    content.TextValue, content.ConceptNameCodeSequence = "Secret finding", [code_item()]
    ds.ContentSequence = [content]
    original = copy.deepcopy(ds)
    deid.apply(ds)

    (item,) = ds.ReferencedSeriesSequence
    assert (
        item.SeriesInstanceUID == ds.SeriesInstanceUID == deid.map_uid(original.SeriesInstanceUID)
    )
    assert str(item.PatientName) == str(ds.PatientName)  # one patient, one pseudonym
    assert "PerformingPhysicianName" not in item
    assert not any(elem.tag.is_private for elem in item)
    (ref,) = item.ReferencedInstanceSequence
    assert ref.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert ref.ReferencedSOPClassUID == CTImageStorage
    (image,) = ds.ReferencedImageSequence
    assert image.ReferencedSOPInstanceUID == deid.map_uid("1.2.826.0.1.9.1")
    assert image.ReferencedSOPClassUID == CTImageStorage
    (content_item,) = ds.ContentSequence
    assert "Secret" not in content_item.TextValue
    assert MARK not in content_item.ConceptNameCodeSequence[0].CodeValue


def test_private_tags_are_removed_at_every_level(deid: Deidentifier) -> None:
    ds = rich_instance()
    item = Dataset()
    item.private_block(0x0029, "DEEP", create=True).add_new(0x10, "LO", "deep")
    ds.ReferencedSeriesSequence = [item]
    deid.apply(ds)
    assert not [elem for elem in ds.iterall() if elem.tag.is_private]


def test_uids_map_consistently_across_instances_and_keep_references(deid: Deidentifier) -> None:
    study, series = generate_uid(), generate_uid()
    first = rich_instance(study_uid=study, series_uid=series)
    second = rich_instance(study_uid=study, series_uid=series)
    second.FrameOfReferenceUID = first.FrameOfReferenceUID
    second.ReferencedImageSequence = [ref_item(first.SOPInstanceUID)]
    originals = [copy.deepcopy(first), copy.deepcopy(second)]
    deid.apply(first)
    deid.apply(second)

    assert first.StudyInstanceUID == second.StudyInstanceUID != study
    assert first.SeriesInstanceUID == second.SeriesInstanceUID != series
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert first.IrradiationEventUID == deid.map_uid("1.2.826.0.1.9.77")
    for new, old in zip((first, second), originals, strict=True):
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert new[keyword].value == deid.map_uid(old[keyword].value) != old[keyword].value


def test_mapping_depends_on_the_secret_only() -> None:
    uid = "1.2.840.113619.2.55.3.604688119.971.1234567890.1"
    assert Deidentifier(SECRET).map_uid(uid) == Deidentifier(bytes(SECRET)).map_uid(uid)
    assert Deidentifier(SECRET).map_uid(uid) != Deidentifier(SECRET + b"2").map_uid(uid)
    names = []
    for secret in (SECRET, SECRET, SECRET + b"2"):
        ds = make_dataset(patient_name="Same^Name", patient_id="SAME1")
        Deidentifier(secret).apply(ds)
        names.append((str(ds.PatientName), ds.PatientID))
    assert names[0] == names[1] != names[2]


@settings(max_examples=50, deadline=None)
@given(uid=st.from_regex(UID_RE, fullmatch=True).filter(lambda u: len(u) <= 64))
def test_map_uid_gives_a_valid_uid_under_2_25(uid: str) -> None:
    new = Deidentifier(SECRET).map_uid(uid)
    assert new.startswith("2.25.") and len(new) <= 64 and UID_RE.fullmatch(new)
    assert UID(new).is_valid and new == Deidentifier(SECRET).map_uid(uid) != uid


def test_sop_class_transfer_syntax_and_pixels_are_kept(deid: Deidentifier) -> None:
    ds = rich_instance()
    pixels, sop_class = ds.PixelData, ds.SOPClassUID
    deid.apply(ds)
    assert ds.SOPClassUID == sop_class == ds.file_meta.MediaStorageSOPClassUID
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PixelData == pixels
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_identity_removed_and_the_method_are_recorded(deid: Deidentifier) -> None:
    ds = rich_instance()
    deid.apply(ds)
    back = roundtrip(ds)
    assert back.PatientIdentityRemoved == "YES"
    assert back.DeidentificationMethod == DEIDENTIFICATION_METHOD
    (code,) = back.DeidentificationMethodCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert code.CodeMeaning == "Basic Application Confidentiality Profile"
    assert back.SOPInstanceUID == back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.PixelData == ds.PixelData


def test_a_second_pass_keeps_earlier_records_and_adds_nothing_twice(deid: Deidentifier) -> None:
    ds = make_dataset()
    ds.DeidentificationMethod = "Earlier tool"
    deid.apply(ds)
    deid.apply(ds)
    assert list(ds.DeidentificationMethod) == ["Earlier tool", DEIDENTIFICATION_METHOD]
    assert len(ds.DeidentificationMethodCodeSequence) == 1


def test_action_for_reads_table_e1_1() -> None:
    assert action_for(Tag("PatientName")) is Action.Z
    assert action_for(Tag("PatientAddress")) is Action.X
    assert action_for(Tag("StudyInstanceUID")) is Action.U
    assert action_for(Tag("ReferencedImageSequence")) is Action.X_Z_U
    assert action_for(0x60023000) is Action.X  # Overlay Data (60xx,3000)
    assert action_for(Tag("SOPClassUID")) is None
    assert action_for(Tag("PixelData")) is None


def test_the_secret_is_checked_and_never_shown() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Deidentifier(b"short")
    assert "xvactor-test-secret" not in repr(Deidentifier(SECRET))


NAMES = st.text(string.ascii_letters + "^ -'" + "äöüéÅ", min_size=1, max_size=40).filter(
    lambda name: name.strip() == name
)
IDS = st.text(string.ascii_uppercase + string.digits + "-", min_size=1, max_size=20)


def pseudonyms(secret: bytes, name: str, patient_id: str) -> tuple[str, str]:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = name, patient_id
    Deidentifier(secret).apply(ds)
    return str(ds.PatientName), ds.PatientID


@settings(max_examples=100, deadline=None)
@given(a=st.tuples(NAMES, IDS), b=st.tuples(NAMES, IDS))
def test_patient_name_and_id_are_replaced_consistently(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    first, again, other = pseudonyms(SECRET, *a), pseudonyms(SECRET, *a), pseudonyms(SECRET, *b)
    assert first == again
    assert first[0] != a[0] and first[1] != a[1]
    assert (first[0] == other[0]) == (a[0] == b[0])
    assert (first[1] == other[1]) == (a[1] == b[1])
