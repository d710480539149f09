"""The streaming resolver over a real catalog: Latin-1, streaming, limit, retrieve."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from xvactor.catalog.sqlite import open_catalog, write_batch
from xvactor.dicom.status import Status, status_for
from xvactor.query.model import PATIENT_ROOT, STUDY_ROOT, Model, parse_identifier
from xvactor.query.resolver import ResultLimitExceeded, resolve, resolve_instances
from xvactor.testing.naive_query import header_record


def ds(**attrs: Any) -> Dataset:
    out = Dataset()
    for keyword, value in attrs.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        out.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))
    return out


def instance(**attrs: Any) -> Dataset:
    base: dict[str, Any] = {
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7",
        "SOPInstanceUID": generate_uid(),
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "PatientID": "P1",
        "PatientName": "Doe^John",
        "StudyDate": "20240115",
        "StudyTime": "101500",
        "Modality": "OT",
    }
    base.update(attrs)
    return ds(**base)


def catalog(path: Path, instances: list[Dataset]) -> sqlite3.Connection:
    conn = open_catalog(path)
    outcomes = write_batch(conn, [(header_record(i), False) for i in instances])
    assert not [o for o in outcomes if isinstance(o, Exception)]
    return conn


def find(
    conn: sqlite3.Connection, model: Model = STUDY_ROOT, *, limit: int = 0, **attrs: Any
) -> list[Dataset]:
    query = parse_identifier(ds(**attrs), model)
    return list(resolve(conn, query, limit=limit))


def encode(identifier: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, identifier)
    return fp.getvalue()


@pytest.fixture
def latin1(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = catalog(
        tmp_path / "c.sqlite",
        [
            instance(
                SpecificCharacterSet="ISO_IR 100",
                PatientName="Müller^Jürgen",
                PatientID="M1",
                InstitutionName="Klinik Süd",
            ),
            instance(PatientName="Muller^Jurgen", PatientID="M2", InstitutionName="North"),
            instance(PatientName="Doe^John", PatientID="D1"),
        ],
    )
    yield conn
    conn.close()


@pytest.mark.parametrize("charset", ["ISO_IR 100", ""])
def test_latin1_wildcard_finds_mueller_and_answers_in_latin1(
    latin1: sqlite3.Connection, charset: str
) -> None:
    keys: dict[str, Any] = {
        "QueryRetrieveLevel": "STUDY",
        "PatientName": "Müller*",
        "PatientID": "",
        "InstitutionName": "",
    }
    if charset:
        keys["SpecificCharacterSet"] = charset
    found = find(latin1, **keys)
    assert [str(r.PatientName) for r in found] == ["Müller^Jürgen"]
    response = found[0]
    assert response.SpecificCharacterSet == "ISO_IR 100"
    assert response.InstitutionName == "Klinik Süd"
    raw = encode(response)
    assert "Müller^Jürgen".encode("latin_1") in raw
    assert "Klinik Süd".encode("latin_1") in raw
    ascii_only = find(latin1, QueryRetrieveLevel="STUDY", PatientName="Doe*", PatientID="")
    assert "SpecificCharacterSet" not in ascii_only[0]  # ISO-IR 6 needs no element


def test_patient_level_latin1_and_case_option(latin1: sqlite3.Connection) -> None:
    def patients(name: str, **options: bool) -> list[str]:
        identifier = ds(QueryRetrieveLevel="PATIENT", PatientName=name, PatientID="")
        query = parse_identifier(identifier, PATIENT_ROOT)
        return sorted(r.PatientID for r in resolve(latin1, query, **options))

    assert patients("M?ller*") == ["M1", "M2"]  # ? is one character, ü or u
    assert patients("Mü*") == ["M1"]
    assert patients("müller*") == []
    assert patients("müller*", case_insensitive_names=True) == ["M1"]
    assert patients("MÜLLER^JÜRGEN", case_insensitive_names=True) == ["M1"]
    assert patients("doe^john", case_insensitive_names=True) == ["D1"]


def test_header_attribute_as_matching_key(latin1: sqlite3.Connection) -> None:
    found = find(latin1, QueryRetrieveLevel="STUDY", InstitutionName="Klinik*", PatientID="")
    assert [r.PatientID for r in found] == ["M1"]


@pytest.fixture
def hospital(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, list[Dataset]]]:
    study = generate_uid()
    ct, pt = generate_uid(), generate_uid()
    instances = [
        instance(StudyInstanceUID=study, SeriesInstanceUID=ct, Modality="CT", PatientID="H1"),
        instance(StudyInstanceUID=study, SeriesInstanceUID=ct, Modality="CT", PatientID="H1"),
        instance(StudyInstanceUID=study, SeriesInstanceUID=pt, Modality="PT", PatientID="H1"),
        instance(PatientID="H1", Modality="MR", StudyDate="20230101"),
        instance(PatientID="H2", Modality="CT", StudyDate="20240301"),
    ]
    conn = catalog(tmp_path / "c.sqlite", instances)
    yield conn, instances
    conn.close()


def test_computed_keys(hospital: tuple[sqlite3.Connection, list[Dataset]]) -> None:
    conn, instances = hospital
    study = instances[0].StudyInstanceUID
    (response,) = find(
        conn,
        QueryRetrieveLevel="STUDY",
        StudyInstanceUID=study,
        ModalitiesInStudy="",
        NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="",
        SOPClassesInStudy="",
        InstanceAvailability="",
    )
    assert list(response.ModalitiesInStudy) == ["CT", "PT"]
    assert int(response.NumberOfStudyRelatedSeries) == 2
    assert int(response.NumberOfStudyRelatedInstances) == 3
    assert response.SOPClassesInStudy == "1.2.840.10008.5.1.4.1.1.7"
    assert response.InstanceAvailability == "ONLINE"
    patients = find(
        conn,
        PATIENT_ROOT,
        QueryRetrieveLevel="PATIENT",
        PatientID="H1",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances="",
    )
    counts = [
        (
            int(r.NumberOfPatientRelatedStudies),
            int(r.NumberOfPatientRelatedSeries),
            int(r.NumberOfPatientRelatedInstances),
        )
        for r in patients
    ]
    assert counts == [(2, 3, 4)]
    by_modality = find(conn, QueryRetrieveLevel="STUDY", ModalitiesInStudy="PT", PatientID="")
    assert [r.PatientID for r in by_modality] == ["H1"]
    series = find(
        conn,
        QueryRetrieveLevel="SERIES",
        StudyInstanceUID=study,
        Modality="CT",
        NumberOfSeriesRelatedInstances="",
    )
    assert [int(r.NumberOfSeriesRelatedInstances) for r in series] == [2]


def test_image_level_and_date_range(hospital: tuple[sqlite3.Connection, list[Dataset]]) -> None:
    conn, instances = hospital
    study = instances[0].StudyInstanceUID
    images = find(
        conn,
        PATIENT_ROOT,
        QueryRetrieveLevel="IMAGE",
        PatientID="H1",
        StudyInstanceUID=study,
        SeriesInstanceUID=instances[0].SeriesInstanceUID,
        SOPInstanceUID="",
    )
    assert {r.SOPInstanceUID for r in images} == {i.SOPInstanceUID for i in instances[:2]}
    dated = find(conn, QueryRetrieveLevel="STUDY", StudyDate="20240101-", PatientID="")
    assert sorted(r.PatientID for r in dated) == ["H1", "H2"]
    assert find(conn, QueryRetrieveLevel="STUDY", StudyDate="-20221231") == []


def test_resolve_instances_for_retrieve(hospital: tuple[sqlite3.Connection, list[Dataset]]) -> None:
    conn, instances = hospital
    query = parse_identifier(
        ds(QueryRetrieveLevel="STUDY", StudyInstanceUID=instances[0].StudyInstanceUID),
        STUDY_ROOT,
        retrieve=True,
    )
    located = list(resolve_instances(conn, query))
    assert [loc.sop_instance_uid for loc in located] == [i.SOPInstanceUID for i in instances[:3]]
    assert located[0].path == f"{instances[0].SOPInstanceUID}.dcm"
    assert located[0].sop_class_uid == "1.2.840.10008.5.1.4.1.1.7"
    assert located[0].transfer_syntax_uid == "1.2.840.10008.1.2.1"
    patient = parse_identifier(
        ds(QueryRetrieveLevel="PATIENT", PatientID="H1"), PATIENT_ROOT, retrieve=True
    )
    assert len(list(resolve_instances(conn, patient))) == 4
    lenient = parse_identifier(
        ds(QueryRetrieveLevel="SERIES", Modality="PT"), STUDY_ROOT, retrieve=True
    )
    assert [loc.sop_instance_uid for loc in resolve_instances(conn, lenient)] == [
        instances[2].SOPInstanceUID
    ]


@pytest.mark.parametrize(("limit", "cut"), [(3, True), (5, False), (0, False)])
def test_limit_ends_with_out_of_resources(tmp_path: Path, limit: int, cut: bool) -> None:
    conn = catalog(tmp_path / "c.sqlite", [instance(PatientID=f"L{n}") for n in range(5)])
    query = parse_identifier(ds(QueryRetrieveLevel="STUDY", PatientID="L*"), STUDY_ROOT)
    responses = resolve(conn, query, limit=limit)
    got = list(itertools.islice(responses, limit or 5))
    assert len(got) == (limit or 5)
    if cut:
        with pytest.raises(ResultLimitExceeded) as info:
            next(responses)
        reply = status_for(info.value)
        assert reply.status == Status.OUT_OF_RESOURCES == 0xA700
        assert reply.error_comment == "Result cut at 3 matches: narrow the query"
    else:
        assert list(responses) == []


def test_results_are_streamed_while_the_catalog_is_read(tmp_path: Path) -> None:
    conn = catalog(tmp_path / "c.sqlite", [instance(PatientID=f"S{n:05d}") for n in range(3000)])
    steps = 0

    def progress() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(progress, 100)  # called every 100 SQLite VM instructions
    query = parse_identifier(ds(QueryRetrieveLevel="STUDY", PatientID="S*"), STUDY_ROOT)
    responses = resolve(conn, query)
    first = next(responses)
    at_first = steps
    assert first.PatientID.startswith("S")
    rest = list(responses)
    assert len(rest) == 2999
    # The first answer came after a small part of the reading (one chunk of rows).
    assert at_first * 5 < steps, (at_first, steps)


def test_closing_the_generator_stops_reading(tmp_path: Path) -> None:
    conn = catalog(tmp_path / "c.sqlite", [instance(PatientID=f"C{n}") for n in range(600)])
    query = parse_identifier(ds(QueryRetrieveLevel="STUDY", PatientID="C*"), STUDY_ROOT)
    responses = resolve(conn, query)
    next(responses)
    responses.close()  # what C-CANCEL does
    # the connection is free for the next statement (no cursor left mid-read)
    assert conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0] == 600


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        ({"StudyDescription": "lead"}, True),  # stored " lead": LO padding not significant
        ({"StudyDescription": "lea*"}, True),
        ({"StudyDate": "-202401"}, True),  # reduced precision upper bound: to 20240131
        ({"StudyDate": "2024-"}, True),
        ({"StudyDate": "-2023"}, False),
        ({"StudyTime": "-10"}, True),  # to 10:59:59.999999
        ({"PatientName": "müller^anna"}, True),  # stored with trailing "^^"
        ({"PatientName": "müller^anna^"}, True),
        ({"PatientName": "müller^ann?"}, True),
    ],
)
def test_sql_prefilter_keeps_what_matching_matches(
    tmp_path: Path, keys: dict[str, Any], found: bool
) -> None:
    conn = catalog(
        tmp_path / "c.sqlite",
        [
            instance(
                SpecificCharacterSet="ISO_IR 100",
                PatientName="müller^anna^^",
                StudyDescription=" lead",
                StudyDate="20240115",
                StudyTime="1030",
            )
        ],
    )
    assert bool(find(conn, QueryRetrieveLevel="STUDY", **keys)) is found
