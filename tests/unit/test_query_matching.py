"""PS3.4 C.2.2.2 matching, one table per matching type, and the response Identifier."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from xvactor.query.matching import (
    build_response,
    is_universal,
    match_identifier,
    response_character_set,
)


def ds(**attrs: Any) -> Dataset:
    """A dataset as a peer may send it: query values (ranges, wild cards) unvalidated."""
    out = Dataset()
    for keyword, value in attrs.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        out.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))
    return out


def item(**attrs: Any) -> Dataset:
    return ds(**attrs)


ENTITY = ds(
    SpecificCharacterSet="ISO_IR 100",
    PatientName="Müller^Jürgen^^",
    PatientID="PID-1",
    PatientSex="M",
    StudyDate="20240115",
    StudyTime="101530.25",
    AccessionNumber="ACC 7",
    StudyDescription="Thorax pa",
    StudyInstanceUID="1.2.3.4",
    ModalitiesInStudy=["CT", "PT"],
    SeriesNumber="12",
    AcquisitionDateTime="20240115101530",
    ScheduledProcedureStepSequence=[
        item(
            Modality="MR", ScheduledStationAETitle="MR1", ScheduledProcedureStepStartDate="20240115"
        ),
        item(
            Modality="CT", ScheduledStationAETitle="CT1", ScheduledProcedureStepStartDate="20240116"
        ),
    ],
)


def check(key: Dataset, expected: bool, **options: bool) -> None:
    assert match_identifier(key, ENTITY, **options) is expected, key


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"PatientID": "PID-1"}, True),
        ({"PatientID": "PID-2"}, False),
        ({"PatientID": "pid-1"}, False),  # case sensitive outside PN
        ({"PatientID": " PID-1 "}, True),  # LO padding is not significant
        ({"PatientName": "Müller^Jürgen"}, True),  # trailing empty components ignored
        ({"PatientName": "Müller^Jürgen^^"}, True),
        ({"PatientName": "müller^jürgen"}, False),  # PN case sensitive by default
        ({"PatientName": "Müller"}, False),
        ({"AccessionNumber": "ACC 7"}, True),
        ({"SeriesNumber": "012"}, True),  # IS compares as a number
        ({"SeriesNumber": "13"}, False),
        ({"StudyDate": "20240115"}, True),
        ({"StudyDate": "20240116"}, False),
        ({"StudyTime": "101530.250"}, True),  # same instant, other precision
        ({"StudyTime": "1015"}, False),
        ({"InstitutionName": "X"}, False),  # absent in the entity: no match
    ],
)
def test_single_value(attrs: dict[str, Any], expected: bool) -> None:
    check(ds(**attrs), expected)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"PatientName": "müller^jürgen"}, True),
        ({"PatientName": "MÜLLER*"}, True),
        ({"PatientName": "m?ller^j*"}, True),
        ({"PatientID": "pid-1"}, False),  # only PN folds case
    ],
)
def test_case_insensitive_names(attrs: dict[str, Any], expected: bool) -> None:
    check(ds(**attrs), expected, case_insensitive_names=True)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"PatientID": ""}, True),
        ({"InstitutionName": ""}, True),  # absent attribute, universal key
        ({"PatientName": "*"}, True),
        ({"InstitutionName": "*"}, True),  # "*" is universal (C.2.2.2.4 Note 1)
        ({"PatientName": "**"}, True),
        ({"StudyDate": ""}, True),
        ({"ScheduledProcedureStepSequence": []}, True),
        ({"ScheduledProcedureStepSequence": [item(Modality="")]}, True),
        ({"ReferencedStudySequence": []}, True),
    ],
)
def test_universal(attrs: dict[str, Any], expected: bool) -> None:
    key = ds(**attrs)
    assert all(is_universal(elem) for elem in key)
    check(key, expected)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"PatientName": "Müller*"}, True),
        ({"PatientName": "M?ller^J?rgen"}, True),  # ? is one character, ü included
        ({"PatientName": "*^Jürgen"}, True),
        ({"PatientName": "Mu*"}, False),
        ({"PatientName": "Müller?"}, False),
        ({"PatientID": "PID*"}, True),
        ({"PatientID": "P?D-?"}, True),
        ({"PatientID": "P?D"}, False),
        ({"StudyDescription": "*pa"}, True),
        ({"StudyDescription": "*PA"}, False),
        ({"StudyDate": "2024*"}, False),  # no wild cards in DA
        ({"StudyInstanceUID": "1.2.*"}, False),  # nor in UI
    ],
)
def test_wildcard(attrs: dict[str, Any], expected: bool) -> None:
    check(ds(**attrs), expected)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"StudyDate": "20240101-20240131"}, True),
        ({"StudyDate": "20240115-20240115"}, True),
        ({"StudyDate": "20240116-20240131"}, False),
        ({"StudyDate": "-20240115"}, True),
        ({"StudyDate": "-20240114"}, False),
        ({"StudyDate": "20240115-"}, True),
        ({"StudyDate": "20240116-"}, False),
        ({"StudyDate": "2024-"}, True),  # reduced precision: from 20240101
        ({"StudyDate": "-2023"}, False),
        ({"StudyDate": "-202401"}, True),  # up to 20240131
        ({"StudyDate": "-"}, False),
        ({"StudyDate": "2024x-"}, False),
        ({"StudyTime": "10-11"}, True),
        ({"StudyTime": "1016-"}, False),
        ({"StudyTime": "-1015"}, True),  # up to 10:15:59.999999
        ({"StudyTime": "-101530.2"}, True),  # up to 10:15:30.299999
        ({"StudyTime": "-101530.1"}, False),
        ({"StudyTime": "101530.25-101530.25"}, True),
        ({"AcquisitionDateTime": "20240115-20240115"}, True),  # DT: whole day
        ({"AcquisitionDateTime": "202401151016-"}, False),
        ({"AcquisitionDateTime": "20240115111531+0100-"}, False),  # offsets applied
        ({"AcquisitionDateTime": "20240115101530+0100-"}, True),
        ({"AcquisitionDateTime": "20240115101530"}, True),
    ],
)
def test_range(attrs: dict[str, Any], expected: bool) -> None:
    check(ds(**attrs), expected)


@pytest.mark.parametrize(
    ("date", "time", "independent", "combined"),
    [
        # 2024-01-14 11:00 .. 2024-01-15 11:00 holds 2024-01-15 10:15
        ("20240114-20240115", "1100-1100", False, True),
        # 2024-01-15 10:30 .. 2024-01-16 09:00 does not
        ("20240115-20240116", "1030-0900", False, False),
        ("20240115-", "1200-", False, False),
        ("-20240115", "-1100", True, True),
        ("20240115", "1000-1100", True, True),  # forms differ: not combined
    ],
)
def test_combined_date_time(date: str, time: str, independent: bool, combined: bool) -> None:
    key = ds(StudyDate=date, StudyTime=time)
    check(key, independent)
    check(key, combined, combined_datetime=True)


@pytest.mark.parametrize(
    ("uids", "expected"),
    [
        (["1.2.3.4"], True),
        (["1.2.3", "1.2.3.4", "9.9"], True),
        (["1.2.3", "1.2.3.5"], False),
    ],
)
def test_list_of_uids(uids: list[str], expected: bool) -> None:
    check(ds(StudyInstanceUID=uids), expected)


@pytest.mark.parametrize(
    ("key_item", "expected"),
    [
        (item(Modality="MR"), True),
        (item(Modality="CT", ScheduledStationAETitle="CT1"), True),
        (item(Modality="MR", ScheduledStationAETitle="CT1"), False),  # one item must match all
        (item(ScheduledStationAETitle="*1", ScheduledProcedureStepStartDate="20240116-"), True),
        (item(ScheduledStationAETitle="MR1", ScheduledProcedureStepStartDate="20240116-"), False),
        (item(Modality="US"), False),
        (item(Modality="", ScheduledStationAETitle=""), True),
    ],
)
def test_sequence(key_item: Dataset, expected: bool) -> None:
    check(ds(ScheduledProcedureStepSequence=[key_item]), expected)


def test_sequence_absent_in_entity_matches_only_universal() -> None:
    check(ds(RequestAttributesSequence=[item(RequestedProcedureID="X")]), False)
    check(ds(RequestAttributesSequence=[item(RequestedProcedureID="")]), True)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"ModalitiesInStudy": "PT"}, True),  # any value of the entity
        ({"ModalitiesInStudy": "MR"}, False),
        ({"ModalitiesInStudy": ["MR", "CT"]}, True),  # several key values: any of them
        ({"ModalitiesInStudy": ["MR", "US"]}, False),
        ({"ModalitiesInStudy": "?T"}, True),
        ({"PatientID": ["X", "PID-1"]}, True),
    ],
)
def test_multiple_values(attrs: dict[str, Any], expected: bool) -> None:
    check(ds(**attrs), expected)


def test_all_keys_must_match_and_non_keys_are_ignored() -> None:
    check(ds(PatientID="PID-1", StudyDate="2024-", PatientSex="M"), True)
    check(ds(PatientID="PID-1", StudyDate="2024-", PatientSex="F"), False)
    check(ds(QueryRetrieveLevel="STUDY", SpecificCharacterSet="ISO_IR 192"), True)


def encode(identifier: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, identifier)
    return fp.getvalue()


def test_response_has_every_key_filled_from_the_entity() -> None:
    keys = ds(
        QueryRetrieveLevel="STUDY",
        SpecificCharacterSet="ISO_IR 100",
        PatientName="Müller*",
        PatientID="",
        InstitutionName="",
        ModalitiesInStudy="",
        ScheduledProcedureStepSequence=[item(Modality="CT", ScheduledStationAETitle="")],
        ReferencedStudySequence=[],
    )
    response = build_response(keys, ENTITY, character_set="ISO_IR 100")
    assert response.QueryRetrieveLevel == "STUDY"
    assert response.SpecificCharacterSet == "ISO_IR 100"
    assert str(response.PatientName) == "Müller^Jürgen^^"
    assert response.PatientID == "PID-1"
    assert "InstitutionName" in response
    assert response.InstitutionName in (None, "")
    assert list(response.ModalitiesInStudy) == ["CT", "PT"]
    sps = response.ScheduledProcedureStepSequence
    assert len(sps) == 1  # only the matching item, only the requested item keys
    assert sps[0].Modality == "CT"
    assert sps[0].ScheduledStationAETitle == "CT1"
    assert "ScheduledProcedureStepStartDate" not in sps[0]
    assert "ReferencedStudySequence" in response
    assert len(response.ReferencedStudySequence) == 0
    assert "PatientSex" not in response
    assert "Müller".encode("latin_1") in encode(response)


def test_empty_sequence_key_returns_the_whole_sequence() -> None:
    response = build_response(
        ds(ScheduledProcedureStepSequence=[]), ENTITY, character_set="ISO_IR 100"
    )
    assert len(response.ScheduledProcedureStepSequence) == 2
    assert response.ScheduledProcedureStepSequence[1].ScheduledProcedureStepStartDate == "20240116"


@pytest.mark.parametrize(
    ("name", "preferred", "expected"),
    [
        ("Doe^John", "ISO_IR 100", ""),  # ASCII: default repertoire, no element
        ("Müller^Jürgen", "ISO_IR 100", "ISO_IR 100"),
        ("Müller^Jürgen", "", "ISO_IR 192"),
        ("Müller^Jürgen", "ISO_IR 192", "ISO_IR 192"),
        ("Ἀθῆναι^Π", "ISO_IR 100", "ISO_IR 192"),  # Latin-1 cannot: UTF-8
        ("Иванов^Иван", "ISO_IR 144", "ISO_IR 144"),
    ],
)
def test_response_character_set(name: str, preferred: str, expected: str) -> None:
    assert response_character_set(ds(PatientName=name), preferred) == expected
    response = build_response(ds(PatientName=""), ds(PatientName=name), character_set=preferred)
    assert response.get("SpecificCharacterSet", "") == expected
    if expected and expected != "ISO_IR 192":
        assert name.split("^", maxsplit=1)[0].encode(
            {"ISO_IR 100": "latin_1", "ISO_IR 144": "iso8859_5"}[expected]
        ) in encode(response)


def _step(date: str, time: str, physician: str) -> Dataset:
    item = Dataset()
    item.ScheduledProcedureStepStartDate = date
    item.ScheduledProcedureStepStartTime = time
    item.ScheduledPerformingPhysicianName = physician
    return item


def test_options_reach_sequence_items_when_matching_and_responding() -> None:
    candidate = Dataset()
    candidate.ScheduledProcedureStepSequence = [
        _step("20240115", "083000", "Ross^Bob"),
        _step("20240116", "060000", "Müller^Anna"),
    ]
    keys = Dataset()
    keys.ScheduledProcedureStepSequence = [_step("20240115-20240116", "0800-0700", "")]
    # Combined (C.2.2.2.5.1): 15th 08:30 and 16th 06:00 both fall in 15th 08:00 - 16th 07:00;
    # apart, no time is both >= 08:00 and <= 07:00.
    assert match_identifier(keys, candidate, combined_datetime=True)
    assert not match_identifier(keys, candidate)
    response = build_response(keys, candidate, character_set="", combined_datetime=True)
    assert len(response.ScheduledProcedureStepSequence) == 2

    keys = Dataset()
    keys.ScheduledProcedureStepSequence = [_step("", "", "müller*")]
    assert match_identifier(keys, candidate, case_insensitive_names=True)
    response = build_response(
        keys, candidate, character_set="ISO_IR 100", case_insensitive_names=True
    )
    names = [
        str(i.ScheduledPerformingPhysicianName) for i in response.ScheduledProcedureStepSequence
    ]
    assert names == ["Müller^Anna"]
