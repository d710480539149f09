"""The flat encoder writes exactly what pydicom writes, or declines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import encode

from xvactor.dicom.flat_encode import encode_flat
from xvactor.testing.datasets import make_dataset


def pydicoms(ds: Dataset, implicit: bool) -> bytes:
    raw = encode(ds, implicit, True)
    assert raw is not None
    return bytes(raw)


def response(charset: str | None = None, name: str = "Müller^Jürgen") -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name
    ds.PatientID = "P1"
    ds.StudyDate = "20240105"
    ds.StudyTime = ""
    ds.StudyInstanceUID = "1.2.3.45"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.NumberOfStudyRelatedInstances = 12
    ds.StudyDescription = "odd"
    ds.AccessionNumber = None
    ds.Rows = 512
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.ImageComments = "x" * 301
    return ds


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize(
    ("charset", "name"),
    [("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 192", "Müller^Jürgen"), (None, "Smith^John")],
)
def test_responses_equal_pydicoms(implicit: bool, charset: str | None, name: str) -> None:
    ds = response(charset, name)
    assert encode_flat(ds, implicit_vr=implicit) == pydicoms(ds, implicit)


@pytest.mark.parametrize("implicit", [True, False])
def test_sequences_equal_pydicoms(implicit: bool) -> None:
    ds = response("ISO_IR 100")
    step = Dataset()
    step.ScheduledStationAETitle = ["CT01", "CT02"]
    step.ScheduledProcedureStepStartDate = "20240115"
    step.ScheduledPerformingPhysicianName = "Müller^Anna"
    step.ScheduledProtocolCodeSequence = Sequence([Dataset(), Dataset()])
    step.ScheduledProtocolCodeSequence[0].CodeValue = "X1"
    ds.ScheduledProcedureStepSequence = Sequence([step])
    ds.ReferencedStudySequence = Sequence([])
    assert encode_flat(ds, implicit_vr=implicit) == pydicoms(ds, implicit)


def test_declines_what_it_does_not_handle() -> None:
    item_charset = response("ISO_IR 100")
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item_charset.ReferencedSeriesSequence = Sequence([item])
    assert encode_flat(item_charset, implicit_vr=False) is None
    japanese = response("ISO 2022 IR 87", "Yamada^Tarou")
    assert encode_flat(japanese, implicit_vr=False) is None
    not_latin1 = response("ISO_IR 100", "Wałęsa^Lech")
    assert encode_flat(not_latin1, implicit_vr=False) is None
    binary = make_dataset(rows=4, columns=4)  # Pixel Data is OW: pydicom's job
    assert encode_flat(binary, implicit_vr=False) is None


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\\"),
                 max_size=40),
    number=st.integers(min_value=0, max_value=2**31 - 1),
    implicit=st.booleans(),
)  # fmt: skip
def test_random_values_equal_pydicoms(text: str, number: int, implicit: bool) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = text[:20]
    ds.StudyDescription = text[:64]
    ds.NumberOfStudyRelatedSeries = number
    ds.Columns = number % 65536
    assert encode_flat(ds, implicit_vr=implicit) == pydicoms(ds, implicit)
