"""Worklist items: checks, add/list/remove in the catalog, .wl and DICOM JSON files."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from tests.unit.test_worklist_helpers import make_item, query, sps_ids, write_wl
from xvactor.actors.catalog import CATALOG_FILE
from xvactor.testing.dcmtk import run_tool
from xvactor.worklist import (
    WorklistFileError,
    WorklistItemError,
    add_items,
    expand_paths,
    find_worklist,
    list_items,
    open_worklist,
    read_worklist_file,
    remove_item,
)
from xvactor.worklist.items import decode_item, index_item


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_worklist(tmp_path / "data")
    yield connection
    connection.close()


def test_add_list_remove(conn: sqlite3.Connection) -> None:
    ids = add_items(conn, [make_item(1, date="20240102"), make_item(2, date="20240101")])
    assert ids == [1, 2]
    listed = list_items(conn)
    assert [item.item_id for item in listed] == [2, 1]  # in order of SPS start
    first = listed[1]
    assert first.scheduled_procedure_step_id == "SPS0001"
    assert first.accession_number == "ACC0001"
    assert first.requested_procedure_id == "RP0001"
    assert first.patient_id == "PID0001"
    assert first.modality == "CT"
    assert first.scheduled_station_ae_title == "CT01"
    assert (first.start_date, first.start_time) == ("20240102", "083000")
    assert first.performing_physician_name == "Ross^Bob"
    assert remove_item(conn, 1) is True
    assert remove_item(conn, 1) is False
    assert [item.item_id for item in list_items(conn)] == [2]
    assert conn.execute("SELECT count(*) FROM worklist_stations").fetchone()[0] == 1


def test_same_step_identity_replaces_and_keeps_its_id(conn: sqlite3.Connection) -> None:
    add_items(conn, [make_item(1), make_item(2)])
    again = make_item(1, modality="MR", stations=("MR01", "MR02"))
    assert add_items(conn, [again]) == [1]
    items = {item.item_id: item for item in list_items(conn)}
    assert len(items) == 2
    assert items[1].modality == "MR"
    assert items[1].scheduled_station_ae_title == "MR01\\MR02"
    stations = conn.execute("SELECT station_ae_title FROM worklist_stations WHERE item_id = 1")
    assert sorted(row[0] for row in stations) == ["MR01", "MR02"]
    removed_then_added = remove_item(conn, 2) and add_items(conn, [make_item(2)])
    assert removed_then_added == [3]  # ids are never reused


def test_ids_survive_reopening(tmp_path: Path) -> None:
    first = open_worklist(tmp_path)
    add_items(first, [make_item(1)])
    first.close()
    second = open_worklist(tmp_path, create=False)
    assert [item.item_id for item in list_items(second)] == [1]
    second.close()
    assert (tmp_path / CATALOG_FILE).is_file()


def test_open_without_create_needs_a_catalog(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_worklist(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()


def _without_step_key(keyword: str) -> Dataset:
    ds = make_item(1)
    delattr(ds.ScheduledProcedureStepSequence[0], keyword)
    return ds


def _two_steps() -> Dataset:
    ds = make_item(1)
    ds.ScheduledProcedureStepSequence.append(make_item(2).ScheduledProcedureStepSequence[0])
    return ds


def _no_steps() -> Dataset:
    ds = make_item(1)
    del ds.ScheduledProcedureStepSequence
    return ds


def _put(target: Dataset, changes: dict[str, object]) -> None:
    """Set keys without pydicom's value checks (malformed values are the point)."""
    for keyword, value in changes.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None
        target.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))


def _changed(**changes: object) -> Dataset:
    ds = make_item(1)
    _put(ds, changes)
    return ds


def _step_changed(**changes: object) -> Dataset:
    ds = make_item(1)
    _put(ds.ScheduledProcedureStepSequence[0], changes)
    return ds


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (_no_steps(), "needs a ScheduledProcedureStepSequence with exactly one item"),
        (_two_steps(), "with exactly one item, it has 2"),
        (_without_step_key("ScheduledStationAETitle"), "ScheduledStationAETitle is missing"),
        (_without_step_key("Modality"), "Modality is missing or empty"),
        (_without_step_key("ScheduledProcedureStepID"), "ScheduledProcedureStepID is missing"),
        (_step_changed(ScheduledProcedureStepStartDate=""), "StartDate is missing or empty"),
        (_step_changed(ScheduledProcedureStepStartDate="2024"), "StartDate is not a date"),
        (_step_changed(ScheduledProcedureStepStartTime="8h30"), "StartTime is not a time"),
        (_step_changed(Modality=["CT", "MR"]), "Modality has 2 values, PS3.6 allows 1"),
        (_changed(PatientID=""), "PatientID is missing or empty"),
        (_changed(PatientName=""), "PatientName is missing or empty"),
        (_changed(RequestedProcedureID=""), "RequestedProcedureID is missing or empty"),
        (_changed(StudyInstanceUID="1.02.3"), "StudyInstanceUID is not a valid UID"),
        (_changed(SpecificCharacterSet="ISO_IR 999"), "unknown Specific Character Set"),
    ],
)
def test_invalid_items_are_refused_with_one_line(
    conn: sqlite3.Connection, item: Dataset, reason: str
) -> None:
    with pytest.raises(WorklistItemError, match=reason) as caught:
        add_items(conn, [item])
    assert "\n" not in str(caught.value)
    assert list_items(conn) == []


def test_type_2_keys_may_be_empty(conn: sqlite3.Connection) -> None:
    item = make_item(1, accession="", physician="")
    assert add_items(conn, [item]) == [1]


def test_one_bad_item_adds_nothing(conn: sqlite3.Connection) -> None:
    with pytest.raises(WorklistItemError, match=r"^item 2: PatientID is missing"):
        add_items(conn, [make_item(1), _changed(PatientID="")])
    assert list_items(conn) == []


def test_latin1_item_is_stored_in_its_own_character_set(conn: sqlite3.Connection) -> None:
    add_items(conn, [make_item(1, patient_name="Müller^Jürgen", physician="Åström^Sven")])
    blob, charset = conn.execute(
        "SELECT dataset, specific_character_set FROM worklist_items"
    ).fetchone()
    assert charset == "ISO_IR 100"
    assert "Müller^Jürgen".encode("latin_1") in blob
    back = decode_item(blob)
    assert str(back.PatientName) == "Müller^Jürgen"
    step = back.ScheduledProcedureStepSequence[0]
    assert str(step.ScheduledPerformingPhysicianName) == "Åström^Sven"
    assert list_items(conn)[0].patient_name == "Müller^Jürgen"


def test_stored_bytes_are_the_item(conn: sqlite3.Connection) -> None:
    item = make_item(7, stations=("A1", "A2"))
    indexed = index_item(item)
    back = decode_item(indexed.dataset)
    assert back.StudyInstanceUID == item.StudyInstanceUID
    assert list(back.ScheduledProcedureStepSequence[0].ScheduledStationAETitle) == ["A1", "A2"]
    assert indexed.scheduled_station_ae_titles == ("A1", "A2")


# --- files -------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", [None, "+ti", "+tb"])
def test_wl_files_in_any_syntax(
    tmp_path: Path, conn: sqlite3.Connection, syntax: str | None
) -> None:
    path = write_wl(make_item(1, patient_name="Müller^Jürgen"), tmp_path / "one.wl")
    if syntax is not None:  # DCMTK converts: implicit VR LE, explicit VR big endian
        converted = tmp_path / "converted.wl"
        run_tool("dcmconv", syntax, path, converted, check=True)
        path = converted
    datasets = read_worklist_file(path)
    assert add_items(conn, datasets) == [1]
    responses = list(find_worklist(conn, query(top_PatientName="Müller*")))
    assert sps_ids(responses) == {"SPS0001"}
    assert str(responses[0].PatientName) == "Müller^Jürgen"


def test_wl_file_made_by_dump2dcm(tmp_path: Path, conn: sqlite3.Connection) -> None:
    dump = tmp_path / "item.dump"
    dump.write_bytes(
        "\n".join(
            [
                "(0008,0005) CS [ISO_IR 100]",
                "(0008,0050) SH [A123]",
                "(0010,0010) PN [Müller^Jürgen]",
                "(0010,0020) LO [P123]",
                "(0020,000d) UI [1.2.3.4.5]",
                "(0032,1060) LO [Thorax]",
                "(0040,0100) SQ (Sequence with undefined length)",
                "  (fffe,e000) na (Item with undefined length)",
                "    (0008,0060) CS [CR]",
                "    (0040,0001) AE [CR01\\CR02]",
                "    (0040,0002) DA [20240301]",
                "    (0040,0003) TM [0915]",
                "    (0040,0006) PN [Grün^Anna]",
                "    (0040,0007) LO [Thorax pa]",
                "    (0040,0009) SH [S1]",
                "  (fffe,e00d) na (ItemDelimitationItem)",
                "(fffe,e0dd) na (SequenceDelimitationItem)",
                "(0040,1001) SH [R1]",
                "",
            ]
        ).encode("latin_1")
    )
    wl = tmp_path / "item.wl"
    run_tool("dump2dcm", "-g", dump, wl, check=True)
    [item_id] = add_items(conn, read_worklist_file(wl))
    [summary] = list_items(conn)
    assert summary.item_id == item_id
    assert summary.patient_name == "Müller^Jürgen"
    assert summary.performing_physician_name == "Grün^Anna"
    assert summary.scheduled_station_ae_title == "CR01\\CR02"
    assert summary.start_time == "0915"


def test_bare_dataset_without_preamble(tmp_path: Path, conn: sqlite3.Connection) -> None:
    path = tmp_path / "bare.wl"
    make_item(1).save_as(path, implicit_vr=False, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    assert add_items(conn, read_worklist_file(path)) == [1]


def test_json_object_and_array(tmp_path: Path, conn: sqlite3.Connection) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(make_item(1).to_json_dict()), encoding="utf-8")
    many = tmp_path / "many.json"
    many.write_text(
        json.dumps([make_item(2).to_json_dict(), make_item(3).to_json_dict()]), encoding="utf-8"
    )
    datasets = [ds for path in (one, many) for ds in read_worklist_file(path)]
    assert add_items(conn, datasets) == [1, 2, 3]
    assert sps_ids(find_worklist(conn, query())) == {"SPS0001", "SPS0002", "SPS0003"}


def test_json_latin1_names_survive(tmp_path: Path, conn: sqlite3.Connection) -> None:
    path = tmp_path / "latin1.json"
    path.write_text(
        json.dumps(make_item(1, patient_name="Müller^Jürgen").to_json_dict(), ensure_ascii=False),
        encoding="utf-8",
    )
    add_items(conn, read_worklist_file(path))
    [response] = find_worklist(conn, query(top_PatientName="Müller*"))
    assert str(response.PatientName) == "Müller^Jürgen"
    assert response.SpecificCharacterSet == "ISO_IR 100"


def test_json_without_character_set_gets_utf8(tmp_path: Path, conn: sqlite3.Connection) -> None:
    path = tmp_path / "utf8.json"
    item = make_item(1, patient_name="Ñúñez^Zoë", charset=None).to_json_dict()
    path.write_text(json.dumps(item), encoding="utf-8")
    [ds] = read_worklist_file(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    add_items(conn, [ds])
    assert list_items(conn)[0].patient_name == "Ñúñez^Zoë"


def test_json_text_its_character_set_cannot_encode(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    item = make_item(1, patient_name="Jürgen", charset=None).to_json_dict()
    item["00080005"] = {"vr": "CS", "Value": ["ISO_IR 6"]}
    item["00100010"] = {"vr": "PN", "Value": [{"Alphabetic": "Ōta^Ken"}]}
    path.write_text(json.dumps(item), encoding="utf-8")
    with pytest.raises(WorklistFileError, match="not encodable in its Specific Character Set"):
        read_worklist_file(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello, not DICOM\n", "not a DICOM file or DICOM JSON"),
        (b"", "not a DICOM file or DICOM JSON"),
        (b"\x00" * 128 + b"DICM\x02\x00", "not a DICOM file or DICOM JSON"),
        (b'{"00100010": ', "not valid DICOM JSON"),
        (b"[1, 2]", "a DICOM JSON dataset must be an object"),
        (b'{"00100010": {"vr": "PN", "Value": "a"}}', "not valid DICOM JSON"),
        (b'{"00100010": {"Value": ["a"]}}', "not valid DICOM JSON"),
    ],
)
def test_invalid_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.wl"
    path.write_bytes(content)
    with pytest.raises(WorklistFileError, match=reason) as caught:
        read_worklist_file(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(WorklistFileError, match="cannot read"):
        read_worklist_file(tmp_path / "missing.wl")


def test_a_directory_stands_for_its_wl_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "b.wl").touch()
    (tmp_path / "a.json").touch()
    (tmp_path / "lockfile").touch()
    (tmp_path / "notes.txt").touch()
    assert expand_paths([tmp_path]) == [tmp_path / "a.json", tmp_path / "b.wl"]
    assert expand_paths([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]
