"""The fast header scan agrees with pydicom's reading, or steps aside (``None``)."""

from __future__ import annotations

import io

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from xvactor.dicom.part10 import dataset_offset, read_header_in
from xvactor.dicom.records import KEY_TAGS, InstanceRecord, record_from_header
from xvactor.dicom.scan import scan_header
from xvactor.testing.datasets import make_dataset

LITTLE_ENDIAN = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)


def item(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def with_sequences(ds: Dataset, *, undefined: bool) -> Dataset:
    """Nested sequences around the indexed keys (which must be read at the top level only)."""
    inner = Sequence([item(CodeValue="T-A0100", CodingSchemeDesignator="SRT", CodeMeaning="X")])
    outer = item(
        StudyInstanceUID="9.9.9",  # not the instance's: nested, so never indexed
        AnatomicRegionSequence=inner,
    )
    ds.ReferencedStudySequence = Sequence([outer, item(ReferencedSOPInstanceUID="1.2.3")])
    ds.RequestAttributesSequence = Sequence([])
    for element in (ds["ReferencedStudySequence"], outer["AnatomicRegionSequence"]):
        element.value.is_undefined_length = undefined
    ds["ReferencedStudySequence"].is_undefined_length = undefined
    ds["RequestAttributesSequence"].is_undefined_length = undefined
    for sequence_item in ds.ReferencedStudySequence:
        sequence_item.is_undefined_length_sequence_item = undefined
    return ds


def encode(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def both(data: bytes, syntax: str) -> tuple[InstanceRecord | None, InstanceRecord]:
    """The record from the scan (``None``: it stepped aside) and from pydicom."""
    offset = dataset_offset(io.BytesIO(data))
    read = read_header_in(data, offset, syntax, size=len(data))
    assert read is not None
    common = {
        "affected_sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "transfer_syntax_uid": syntax,
        "path": "",
        "size": len(data),
        "dataset_offset": offset,
        "calling_ae_title": "A",
        "received_at": 0.0,
    }
    uid = str(read.dataset.get("SOPInstanceUID", ""))
    slow = record_from_header(
        read.dataset, affected_sop_instance_uid=uid, header=read.raw, **common
    )  # type: ignore[arg-type]
    scanned = scan_header(data, offset, syntax, complete=True, wanted=KEY_TAGS)
    if scanned is None:
        return None, slow
    fast = record_from_header(
        scanned.values,
        affected_sop_instance_uid=uid,
        header=data[offset : scanned.end],
        **common,  # type: ignore[arg-type]
    )
    return fast, slow


@pytest.mark.parametrize("syntax", LITTLE_ENDIAN)
@pytest.mark.parametrize("undefined", [False, True])
@pytest.mark.parametrize(
    ("character_set", "name"),
    [(None, "Test^Patient"), ("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 192", "Ōtani^Shōhei")],
)
def test_the_scan_reads_what_pydicom_reads(
    syntax: str, undefined: bool, character_set: str | None, name: str
) -> None:
    ds = with_sequences(
        make_dataset(patient_name=name, character_set=character_set), undefined=undefined
    )
    ds.AccessionNumber = ""  # present and empty
    del ds.StudyID  # absent
    fast, slow = both(encode(ds, syntax), syntax)
    assert fast is not None
    assert fast == slow
    assert fast.patient_name == name
    assert fast.study_instance_uid == ds.StudyInstanceUID  # not the nested one


def test_an_undefined_length_un_element_is_walked_as_implicit_vr() -> None:
    """PS3.5 6.2.2: a UN of undefined length holds an implicit VR little endian sequence."""
    ds = with_sequences(make_dataset(), undefined=True)
    data = encode(ds, ExplicitVRLittleEndian)
    # Re-label the sequence as UN (a private or unknown attribute, as relayed by a peer).
    marker = b"\x08\x00\x10\x11SQ\x00\x00\xff\xff\xff\xff"  # (0008,1110) ReferencedStudySequence
    assert data.count(marker) == 1
    relabelled = data.replace(marker, b"\x08\x00\x10\x11UN\x00\x00\xff\xff\xff\xff")
    # Its items are explicit VR here, so a UN walk must fail and step aside, never misread.
    fast, slow = both(relabelled, ExplicitVRLittleEndian)
    assert fast is None or fast == slow
    implicit = encode(with_sequences(make_dataset(), undefined=True), ImplicitVRLittleEndian)
    offset = dataset_offset(io.BytesIO(implicit))
    body = implicit[offset:]
    assert scan_header(body, 0, ImplicitVRLittleEndian, complete=True, wanted=KEY_TAGS)


@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_other_syntaxes_are_left_to_pydicom(syntax: str) -> None:
    data = encode(make_dataset(), ExplicitVRLittleEndian)
    offset = dataset_offset(io.BytesIO(data))
    assert scan_header(data, offset, syntax, complete=True, wanted=KEY_TAGS) is None


def test_a_header_that_may_continue_past_the_bytes_read_is_left_to_pydicom() -> None:
    ds = make_dataset()
    del ds.PixelData  # the header runs to the end of the file
    data = encode(ds, ExplicitVRLittleEndian)
    offset = dataset_offset(io.BytesIO(data))
    assert (
        scan_header(data, offset, ExplicitVRLittleEndian, complete=False, wanted=KEY_TAGS) is None
    )
    whole = scan_header(data, offset, ExplicitVRLittleEndian, complete=True, wanted=KEY_TAGS)
    assert whole is not None and whole.end == len(data)


def test_the_header_ends_at_the_bulk_data() -> None:
    ds = make_dataset()
    data = encode(ds, ExplicitVRLittleEndian)
    offset = dataset_offset(io.BytesIO(data))
    scanned = scan_header(data, offset, ExplicitVRLittleEndian, complete=False, wanted=KEY_TAGS)
    assert scanned is not None
    assert data[scanned.end : scanned.end + 4] == b"\xe0\x7f\x10\x00"  # (7FE0,0010)


SAMPLE = {
    syntax: encode(with_sequences(make_dataset(), undefined=True), syntax)
    for syntax in LITTLE_ENDIAN
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    syntax=st.sampled_from(LITTLE_ENDIAN),
    position=st.integers(min_value=0, max_value=10_000),
    garbage=st.binary(min_size=1, max_size=6),
    cut=st.booleans(),
)
def test_damaged_bytes_never_make_the_scan_raise_or_disagree(
    syntax: UID, position: int, garbage: bytes, cut: bool
) -> None:
    data = SAMPLE[syntax]
    offset = dataset_offset(io.BytesIO(data))
    at = offset + position % (len(data) - offset)
    damaged = data[:at] if cut else data[:at] + garbage + data[at + len(garbage) :]
    scanned = scan_header(damaged, offset, syntax, complete=True, wanted=KEY_TAGS)
    if scanned is None:
        return
    try:
        read = read_header_in(damaged, offset, syntax, size=len(damaged))
    except Exception:
        read = None
    if read is None:
        return  # pydicom refuses what the scan walked: only values may be odd, not structure
    assert offset + len(read.raw) == scanned.end
    for tag in KEY_TAGS:
        element = read.dataset.get_item(tag)
        expected = None if element is None else bytes(element.value or b"")
        assert scanned.values.get(tag) == expected or (
            expected == b"" and tag not in scanned.values
        )
