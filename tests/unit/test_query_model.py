"""Information models and the hierarchical Identifier check (PS3.4 C.4.1.2.1, C.6)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from xvactor.dicom.status import DicomServiceError, Status, status_for
from xvactor.query.model import (
    PATIENT_ROOT,
    PATIENT_STUDY_ONLY,
    STUDY_ROOT,
    IdentifierDoesNotMatch,
    Level,
    Model,
    model_for,
    parse_identifier,
)


def ds(**attrs: Any) -> Dataset:
    out = Dataset()
    for keyword, value in attrs.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        out.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))
    return out


@pytest.mark.parametrize(
    ("uid", "model"),
    [
        ("1.2.840.10008.5.1.4.1.2.1.1", PATIENT_ROOT),
        ("1.2.840.10008.5.1.4.1.2.1.2", PATIENT_ROOT),
        ("1.2.840.10008.5.1.4.1.2.1.3", PATIENT_ROOT),
        ("1.2.840.10008.5.1.4.1.2.2.1", STUDY_ROOT),
        ("1.2.840.10008.5.1.4.1.2.2.2", STUDY_ROOT),
        ("1.2.840.10008.5.1.4.1.2.2.3", STUDY_ROOT),
        ("1.2.840.10008.5.1.4.1.2.3.1", PATIENT_STUDY_ONLY),
        ("1.2.840.10008.5.1.4.1.2.3.2", PATIENT_STUDY_ONLY),
        ("1.2.840.10008.5.1.4.1.2.3.3", PATIENT_STUDY_ONLY),
        ("1.2.840.10008.5.1.4.31", None),
    ],
)
def test_model_for_sop_class(uid: str, model: Model | None) -> None:
    assert model_for(uid) is model


@pytest.mark.parametrize(
    ("model", "attrs"),
    [
        (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientName": "A*"}),
        (PATIENT_ROOT, {"QueryRetrieveLevel": "STUDY", "PatientID": "P1", "StudyDate": "2024-"}),
        (
            PATIENT_ROOT,
            {
                "QueryRetrieveLevel": "IMAGE",
                "PatientID": "P1",
                "StudyInstanceUID": "1.2",
                "SeriesInstanceUID": "1.2.3",
                "InstanceNumber": "1",
            },
        ),
        (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "PatientName": "A*", "StudyID": ""}),
        (STUDY_ROOT, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2", "Modality": "CT"}),
        # universal keys above the level are returned (lenient, module doc)
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2", "PatientName": ""},
        ),
        (PATIENT_STUDY_ONLY, {"QueryRetrieveLevel": "STUDY", "PatientID": "P1"}),
        # any header attribute at any level
        (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "InstitutionName": "Klinik*"}),
    ],
)
def test_valid_identifiers(model: Model, attrs: dict[str, Any]) -> None:
    query = parse_identifier(ds(**attrs), model)
    assert query.level is Level[attrs["QueryRetrieveLevel"]]
    assert [elem.keyword for elem in query.identifier] == sorted(
        attrs, key=lambda k: tag_for_keyword(k) or 0
    )


@pytest.mark.parametrize(
    ("model", "attrs", "comment"),
    [
        (STUDY_ROOT, {"PatientName": "A*"}, "QueryRetrieveLevel (0008,0052) missing"),
        (STUDY_ROOT, {"QueryRetrieveLevel": "FRAME"}, "Invalid QueryRetrieveLevel 'FRAME'"),
        (STUDY_ROOT, {"QueryRetrieveLevel": ""}, "Invalid QueryRetrieveLevel ''"),
        (STUDY_ROOT, {"QueryRetrieveLevel": "PATIENT"}, "Study Root has no PATIENT level"),
        (
            PATIENT_STUDY_ONLY,
            {"QueryRetrieveLevel": "SERIES"},
            "Patient/Study Only has no SERIES level",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "STUDY", "Modality": "CT"},
            "Modality is a SERIES key, below STUDY",
        ),
        (
            PATIENT_ROOT,
            {"QueryRetrieveLevel": "PATIENT", "StudyDate": "2024-"},
            "StudyDate is a STUDY key, below PATIENT",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2", "PatientName": "A*"},
            "Relational query not supported: PatientName",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "SERIES", "Modality": "CT"},
            "Hierarchical query needs one StudyInstanceUID",
        ),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": ["1.2", "1.3"]},
            "Hierarchical query needs one StudyInstanceUID",
        ),
        (
            PATIENT_ROOT,
            {"QueryRetrieveLevel": "STUDY", "PatientID": "P*"},
            "Hierarchical query needs one PatientID",
        ),
    ],
)
def test_identifier_does_not_match(model: Model, attrs: dict[str, Any], comment: str) -> None:
    with pytest.raises(IdentifierDoesNotMatch) as info:
        parse_identifier(ds(**attrs), model)
    reply = status_for(info.value)
    assert reply.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS == 0xA900
    assert reply.error_comment == comment


def test_universal_keys_below_the_level_are_dropped() -> None:
    query = parse_identifier(
        ds(QueryRetrieveLevel="STUDY", StudyDate="", SeriesInstanceUID="", Modality=""),
        STUDY_ROOT,
    )
    assert [elem.keyword for elem in query.identifier] == ["StudyDate", "QueryRetrieveLevel"]


def test_character_set_and_unique_values_are_kept() -> None:
    identifier = ds(
        SpecificCharacterSet="ISO_IR 100",
        QueryRetrieveLevel="SERIES",
        PatientID="P1",
        StudyInstanceUID="1.2.3",
    )
    query = parse_identifier(identifier, PATIENT_ROOT)
    assert query.character_set == "ISO_IR 100"
    assert query.unique == {Level.PATIENT: "P1", Level.STUDY: "1.2.3"}
    assert "SpecificCharacterSet" not in query.identifier


def test_undecodable_identifier_is_cannot_understand() -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    # raw bytes as they arrive: not UTF-8 although the character set says so
    identifier[0x00080005] = RawDataElement(0x00080005, "CS", 10, b"ISO_IR 192", 0, False, True)
    identifier[0x00100010] = RawDataElement(0x00100010, "PN", 2, b"\xff\xfe", 0, False, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom only warns; make the failure certain
        with pytest.raises(DicomServiceError) as info:
            parse_identifier(identifier, STUDY_ROOT)
    reply = status_for(info.value)
    assert reply.status == Status.CANNOT_UNDERSTAND == 0xC000
    assert (reply.error_comment or "").startswith("Cannot decode Identifier")


@pytest.mark.parametrize(
    ("attrs", "ok"),
    [
        ({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2"}, True),
        ({"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": ["1.2", "1.3"]}, True),
        # lenient like dcmqrscp: other keys, no unique keys above
        ({"QueryRetrieveLevel": "STUDY", "AccessionNumber": "A1"}, True),
        ({"QueryRetrieveLevel": "STUDY", "PatientName": "Doe*"}, True),
        ({"QueryRetrieveLevel": "STUDY"}, False),
        ({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}, False),
    ],
)
def test_retrieve_identifiers(attrs: dict[str, Any], ok: bool) -> None:
    if ok:
        query = parse_identifier(ds(**attrs), STUDY_ROOT, retrieve=True)
        assert query.level is Level[attrs["QueryRetrieveLevel"]]
    else:
        with pytest.raises(IdentifierDoesNotMatch, match="Retrieve needs StudyInstanceUID"):
            parse_identifier(ds(**attrs), STUDY_ROOT, retrieve=True)
