"""Worklist C-FIND: every indexed matching key, Latin-1, return keys, streaming, limit.

The SQL pre-filter must never drop a match: a hypothesis test compares ``find_worklist``
with ``match_identifier`` applied to every stored item.
"""

from __future__ import annotations

import sqlite3
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from tests.unit.test_worklist_helpers import make_item, query, sps_ids
from xvactor.dicom.status import Status, status_for
from xvactor.query.matching import match_identifier
from xvactor.query.resolver import ResultLimitExceeded
from xvactor.worklist import add_items, find_worklist, open_worklist
from xvactor.worklist.items import decode_item
from xvactor.worklist.query import prefilter
from xvactor.worklist.store import create_worklist_schema

# (n, stations, date, time, modality, physician, patient name)
ITEMS = [
    (1, ("CT01",), "20240110", "080000", "CT", "Ross^Bob", "Doe^John"),
    (2, ("CT01", "CT02"), "20240115", "120000", "CT", "Roth^Ann", "Müller^Jürgen"),
    (3, ("MR01",), "20240115", "1630", "MR", "Smith^Al", "Muller^Hans"),
    (4, ("MR01",), "20240120", "073000.5", "MR", "ross^bob", "Mueller^Eva"),
    (5, ("US01",), "20240201", "235959", "US", "", "Doe^Jane"),
    (6, ("CT02",), "20231231", "22", "CT", "Ross^Bob", "Grün^Anna"),
]


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    connection = open_worklist(tmp_path_factory.mktemp("worklist"))
    add_items(
        connection,
        [
            make_item(n, stations=s, date=d, time=t, modality=m, physician=p, patient_name=name)
            for n, s, d, t, m, p, name in ITEMS
        ],
    )
    yield connection
    connection.close()


def ids(*numbers: int) -> set[str]:
    return {f"SPS{n:04d}" for n in numbers}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, ids(1, 2, 3, 4, 5, 6)),
        # Scheduled Station AE Title: single value, any of several stored, wild card
        ({"ScheduledStationAETitle": "CT01"}, ids(1, 2)),
        ({"ScheduledStationAETitle": "CT02"}, ids(2, 6)),
        ({"ScheduledStationAETitle": "MR*"}, ids(3, 4)),
        ({"ScheduledStationAETitle": "?T0?"}, ids(1, 2, 6)),
        ({"ScheduledStationAETitle": "*"}, ids(1, 2, 3, 4, 5, 6)),
        ({"ScheduledStationAETitle": "XX01"}, set()),
        # SPS Start Date: single, range, open-ended either side
        ({"ScheduledProcedureStepStartDate": "20240115"}, ids(2, 3)),
        ({"ScheduledProcedureStepStartDate": "20240111-20240120"}, ids(2, 3, 4)),
        ({"ScheduledProcedureStepStartDate": "20240115-"}, ids(2, 3, 4, 5)),
        ({"ScheduledProcedureStepStartDate": "-20240110"}, ids(1, 6)),
        ({"ScheduledProcedureStepStartDate": "2024-202401"}, ids(1, 2, 3, 4)),
        # SPS Start Time alone: range, open-ended, single value, reduced precision
        ({"ScheduledProcedureStepStartTime": "0730-1200"}, ids(1, 2, 4)),
        ({"ScheduledProcedureStepStartTime": "22-"}, ids(5, 6)),
        ({"ScheduledProcedureStepStartTime": "-0759"}, ids(4)),
        ({"ScheduledProcedureStepStartTime": "1630"}, ids(3)),
        # Combined date and time: 2024-01-10 12:00 to 2024-01-20 08:00
        (
            {
                "ScheduledProcedureStepStartDate": "20240110-20240120",
                "ScheduledProcedureStepStartTime": "1200-0800",
            },
            ids(2, 3, 4),
        ),
        (
            {
                "ScheduledProcedureStepStartDate": "20240115-",
                "ScheduledProcedureStepStartTime": "1300-",
            },
            ids(3, 4, 5),
        ),
        (
            {
                "ScheduledProcedureStepStartDate": "-20240115",
                "ScheduledProcedureStepStartTime": "-1200",
            },
            ids(1, 2, 6),
        ),
        # A single date with a time range: that day, those hours
        (
            {
                "ScheduledProcedureStepStartDate": "20240115",
                "ScheduledProcedureStepStartTime": "1000-1700",
            },
            ids(2, 3),
        ),
        # Modality
        ({"Modality": "MR"}, ids(3, 4)),
        ({"Modality": "C?"}, ids(1, 2, 6)),
        # Scheduled Performing Physician's Name: exact, wild cards, case sensitive
        ({"ScheduledPerformingPhysicianName": "Ross^Bob"}, ids(1, 6)),
        ({"ScheduledPerformingPhysicianName": "Ro*"}, ids(1, 2, 6)),
        ({"ScheduledPerformingPhysicianName": "*^Bob"}, ids(1, 6)),
        ({"ScheduledPerformingPhysicianName": "R?ss*"}, ids(1, 6)),
        # Patient, request keys (top level)
        ({"top_PatientID": "PID0003"}, ids(3)),
        ({"top_PatientID": "PID000*"}, ids(1, 2, 3, 4, 5, 6)),
        ({"top_AccessionNumber": "ACC0005"}, ids(5)),
        ({"top_RequestedProcedureID": "RP0002"}, ids(2)),
        ({"top_PatientName": "Doe*"}, ids(1, 5)),
        ({"top_PatientName": "M?ller*"}, ids(2, 3)),
        ({"top_PatientName": "Müller*"}, ids(2)),
        ({"top_PatientName": "Grün^Anna"}, ids(6)),
        # A key with several values: any of them (PS3.4 C.2.2.2.8 without negotiation)
        ({"ScheduledStationAETitle": ["US01", "MR01"]}, ids(3, 4, 5)),
        ({"Modality": ["US", "MR"]}, ids(3, 4, 5)),
        ({"top_PatientID": ["PID0001", "PID0006"]}, ids(1, 6)),
        # Several keys at once
        ({"Modality": "CT", "ScheduledStationAETitle": "CT02"}, ids(2, 6)),
        (
            {
                "Modality": "CT",
                "ScheduledProcedureStepStartDate": "20240101-",
                "top_PatientName": "D*",
            },
            ids(1),
        ),
    ],
)
def test_matching_keys(
    conn: sqlite3.Connection, keys: dict[str, str | list[str]], expected: set[str]
) -> None:
    assert sps_ids(find_worklist(conn, query(**keys))) == expected


def test_combined_date_time_can_be_switched_off(conn: sqlite3.Connection) -> None:
    keys = query(
        ScheduledProcedureStepStartDate="20240110-20240120",
        ScheduledProcedureStepStartTime="1200-0800",
    )
    # Separately no time is both after 12:00 and before 08:00.
    assert sps_ids(find_worklist(conn, keys, combined_datetime=False)) == set()


def test_combined_match_returns_its_step(conn: sqlite3.Connection) -> None:
    # Item 3 (2024-01-15 16:30) is in the period, though 16:30 is not in "1630-0800".
    keys = query(
        ScheduledProcedureStepStartDate="20240115-20240120",
        ScheduledProcedureStepStartTime="1630-0800",
    )
    responses = list(find_worklist(conn, keys))
    assert sps_ids(responses) == ids(3, 4)
    for response in responses:
        [step] = response.ScheduledProcedureStepSequence
        assert step.Modality == "MR"


def test_case_insensitive_names(conn: sqlite3.Connection) -> None:
    keys = query(ScheduledPerformingPhysicianName="ROSS^BOB")
    assert sps_ids(find_worklist(conn, keys)) == set()
    responses = list(find_worklist(conn, keys, case_insensitive_names=True))
    assert sps_ids(responses) == ids(1, 4, 6)
    # The step that matched regardless of case is returned, not dropped.
    assert all(len(r.ScheduledProcedureStepSequence) == 1 for r in responses)
    keys = query(top_PatientName="MÜLLER*")
    assert sps_ids(find_worklist(conn, keys, case_insensitive_names=True)) == ids(2)


def test_latin1_query_and_answer(conn: sqlite3.Connection) -> None:
    keys = query(top_PatientName="Müller*")
    keys.SpecificCharacterSet = "ISO_IR 100"
    [response] = find_worklist(conn, keys)
    assert str(response.PatientName) == "Müller^Jürgen"
    assert response.SpecificCharacterSet == "ISO_IR 100"
    [plain] = find_worklist(conn, query(top_PatientID="PID0001"))
    assert "SpecificCharacterSet" not in plain  # ASCII only: ISO-IR 6, no element


def test_return_keys_as_asked(conn: sqlite3.Connection) -> None:
    keys = Dataset()
    keys.PatientID = "PID0002"
    keys.PatientBirthDate = ""
    keys.StudyInstanceUID = ""
    keys.AdmissionID = ""  # not in the item: returned empty
    step = Dataset()
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartTime = ""
    step.ScheduledProcedureStepDescription = ""
    keys.ScheduledProcedureStepSequence = [step]
    [response] = find_worklist(conn, keys)
    assert response.PatientID == "PID0002"
    assert response.PatientBirthDate == "19700101"
    assert response.StudyInstanceUID
    assert response.AdmissionID in ("", None)
    assert "PatientName" not in response  # not asked for
    [answer] = response.ScheduledProcedureStepSequence
    assert list(answer.ScheduledStationAETitle) == ["CT01", "CT02"]
    assert answer.ScheduledProcedureStepStartTime == "120000"
    assert answer.ScheduledProcedureStepDescription == "Step 2"
    assert "Modality" not in answer


def test_empty_sequence_key_returns_the_whole_step(conn: sqlite3.Connection) -> None:
    keys = Dataset()
    keys.PatientID = "PID0003"
    keys.ScheduledProcedureStepSequence = []
    [response] = find_worklist(conn, keys)
    [step] = response.ScheduledProcedureStepSequence
    assert step.Modality == "MR"
    assert step.ScheduledProcedureStepID == "SPS0003"


def test_responses_are_streamed_page_by_page(tmp_path: Path) -> None:
    connection = open_worklist(tmp_path)
    add_items(connection, [make_item(n, date=f"202401{n:02d}") for n in range(1, 26)])
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    responses = find_worklist(connection, query(Modality="CT"), page_size=10)
    assert isinstance(responses, types.GeneratorType)
    assert statements == []  # nothing read before the first response is asked for
    next(responses)
    assert sum("FROM worklist_items" in sql for sql in statements) == 1
    rest = list(responses)
    assert len(rest) == 24
    assert sum("FROM worklist_items" in sql for sql in statements) == 3
    connection.close()


def test_items_added_while_streaming_are_seen_later(tmp_path: Path) -> None:
    connection = open_worklist(tmp_path)
    add_items(connection, [make_item(n, date=f"202401{n:02d}") for n in range(1, 5)])
    responses = find_worklist(connection, query(), page_size=2)
    first = next(responses)
    other = open_worklist(tmp_path)
    add_items(other, [make_item(9, date="20240131")])  # a writer meanwhile: no lock held
    other.close()
    assert sps_ids([first, *responses]) == ids(1, 2, 3, 4, 9)
    connection.close()


def test_limit_cuts_with_out_of_resources(conn: sqlite3.Connection) -> None:
    responses = find_worklist(conn, query(), limit=4)
    got = [next(responses) for _ in range(4)]
    assert len(got) == 4
    with pytest.raises(ResultLimitExceeded) as caught:
        next(responses)
    reply = status_for(caught.value)
    assert reply.status == Status.OUT_OF_RESOURCES == 0xA700
    assert reply.error_comment == "Result cut at 4 matches: narrow the query"


def test_limit_not_reached_ends_normally(conn: sqlite3.Connection) -> None:
    assert len(list(find_worklist(conn, query(), limit=6))) == 6
    assert len(list(find_worklist(conn, query(Modality="MR"), limit=2))) == 2


def test_prefilter_uses_indexed_columns() -> None:
    keys = query(
        ScheduledStationAETitle="CT01",
        Modality="C*",
        ScheduledPerformingPhysicianName="Ro*",
        ScheduledProcedureStepStartDate="20240101-20240131",
        top_PatientName="Doe^J*",
    )
    where = prefilter(keys).where
    for column in ("worklist_stations", "modality GLOB", "performing_physician_fold >=",
                   "start_hi >=", "start_lo <=", "patient_name_fold >="):  # fmt: skip
        assert column in where


# --- the pre-filter never drops a match -------------------------------------------------

_NAMES = ["Doe^John", "doe^john", "Müller^Jürgen", "Muller", "Dö^Ö", "Ross^Bob", ""]
_DATES = ["20231231", "20240101", "20240115", "20240131"]
_TIMES = ["00", "0800", "075959", "120000.5", "2359"]


@st.composite
def _items(draw: st.DrawFn) -> list[Dataset]:
    count = draw(st.integers(1, 8))
    return [
        make_item(
            n,
            stations=draw(
                st.lists(st.sampled_from(["CT01", "CT02", "MR1"]), min_size=1, max_size=2)
            ),
            date=draw(st.sampled_from(_DATES)),
            time=draw(st.sampled_from(_TIMES)),
            modality=draw(st.sampled_from(["CT", "MR"])),
            physician=draw(st.sampled_from(_NAMES)),
            patient_name=draw(st.sampled_from([name for name in _NAMES if name])),
        )
        for n in range(1, count + 1)
    ]


def _range(values: list[str]) -> st.SearchStrategy[str]:
    single = st.sampled_from(values)
    return st.one_of(
        st.just(""),
        single,
        st.builds(lambda a, b: f"{a}-{b}", single, single),
        st.builds(lambda a: f"{a}-", single),
        st.builds(lambda b: f"-{b}", single),
    )


_PATTERNS = st.sampled_from(["", "*", "Doe*", "doe*", "M*ller*", "Müller^Jürgen", "?oss*", "D*^*"])


@st.composite
def _keys(draw: st.DrawFn) -> dict[str, str | list[str]]:
    return {
        "ScheduledStationAETitle": draw(
            st.sampled_from(["", "CT01", "CT*", "*1", "MR?", ["CT02", "MR1"], ["CT*"]])
        ),
        "ScheduledProcedureStepStartDate": draw(_range(_DATES)),
        "ScheduledProcedureStepStartTime": draw(_range(_TIMES)),
        "Modality": draw(st.sampled_from(["", "CT", "M?"])),
        "ScheduledPerformingPhysicianName": draw(_PATTERNS),
        "top_PatientName": draw(_PATTERNS),
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=_items(), keys=_keys(), fold=st.booleans(), combined=st.booleans())
def test_prefilter_never_drops_a_match(
    tmp_path: Path,
    items: list[Dataset],
    keys: dict[str, str | list[str]],
    fold: bool,
    combined: bool,
) -> None:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    create_worklist_schema(connection)
    add_items(connection, items)
    identifier = query(**keys)
    found = sps_ids(
        find_worklist(
            connection, identifier, case_insensitive_names=fold, combined_datetime=combined
        )
    )
    top = Dataset()
    for elem in identifier:
        if elem.keyword != "ScheduledProcedureStepSequence":
            top.add(elem)
    step_keys = identifier.ScheduledProcedureStepSequence[0]
    expected = set()
    for (blob,) in connection.execute("SELECT dataset FROM worklist_items"):
        item = decode_item(blob)
        step = item.ScheduledProcedureStepSequence[0]
        if match_identifier(top, item, case_insensitive_names=fold) and match_identifier(
            step_keys, step, case_insensitive_names=fold, combined_datetime=combined
        ):
            expected.add(str(step.ScheduledProcedureStepID))
    assert found == expected
    connection.close()
