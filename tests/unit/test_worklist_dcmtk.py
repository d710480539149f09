"""Cross-check against DCMTK: ``wlmscpfs`` serves the same ``.wl`` files our catalog holds,
``findscu -W`` asks it, and ``find_worklist`` must answer the same steps for the same keys.

DCMTK 3.6.7's ``wlmscpfs`` does no wild card matching on Scheduled Station AE Title
(PS3.4 C.2.2.2.4 allows it for AE; our own tests cover it), so no query here uses one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.unit.test_worklist_helpers import make_item, query, sps_ids, write_wl
from xvactor.testing.dcmtk import dcmtk_env, require_tool, run_tool
from xvactor.testing.net import LOOPBACK, free_port, wait_for_port
from xvactor.worklist import add_items, find_worklist, open_worklist, read_worklist_file

AE_TITLE = "WLTEST"
# (n, stations, date, time, modality, physician, patient name)
ITEMS = [
    (1, ("CT01",), "20240110", "080000", "CT", "Ross^Bob", "Doe^John"),
    (2, ("CT01", "CT02"), "20240115", "120000", "CT", "Roth^Ann", "Müller^Jürgen"),
    (3, ("MR01",), "20240115", "163000", "MR", "Smith^Al", "Muller^Hans"),
    (4, ("MR01",), "20240120", "073000", "MR", "Ross^Bob", "Mueller^Eva"),
    (5, ("US01",), "20240201", "235959", "US", "Doe^Jane", "Doe^Jane"),
    (6, ("CT02",), "20231231", "220000", "CT", "Ross^Bob", "Grün^Anna"),
]


@dataclass
class Peers:
    port: int
    conn: sqlite3.Connection
    work: Path


def _start_wlmscpfs(database: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [require_tool("wlmscpfs"), "-s", "-dfp", str(database), str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dcmtk_env(),
                start_new_session=True,
            )

        def alive(process: subprocess.Popen[bytes] = process) -> None:
            if process.poll() is not None:
                raise RuntimeError(f"wlmscpfs exited: {log.read_text(errors='replace')}")

        try:
            wait_for_port(LOOPBACK, port, timeout=10.0, check=alive)
        except RuntimeError:
            if "already in use" in log.read_text(errors="replace"):
                continue
            raise
        return process, port
    raise RuntimeError("wlmscpfs found no free port in 3 attempts")


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = tmp_path_factory.mktemp("wlm")
    database = root / "db"
    (database / AE_TITLE).mkdir(parents=True)
    (database / AE_TITLE / "lockfile").touch()
    files = [
        write_wl(
            make_item(n, stations=s, date=d, time=t, modality=m, physician=p, patient_name=name),
            database / AE_TITLE / f"item{n}.wl",
        )
        for n, s, d, t, m, p, name in ITEMS
    ]
    conn = open_worklist(root / "data")
    add_items(conn, [ds for path in files for ds in read_worklist_file(path)])
    process, port = _start_wlmscpfs(database, root / "wlmscpfs.log")
    try:
        yield Peers(port=port, conn=conn, work=root)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        conn.close()


def _dcmtk_answer(peers: Peers, keys: pydicom.Dataset) -> set[str]:
    work = Path(tempfile.mkdtemp(dir=peers.work))
    query_file = write_wl(keys, work / "query.dcm")
    result = run_tool(
        "findscu", "-W", "-aec", AE_TITLE, "-X", "-od", work,
        LOOPBACK, str(peers.port), query_file, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return sps_ids(pydicom.dcmread(path) for path in sorted(work.glob("rsp*.dcm")))


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"Modality": "CT"},
        {"ScheduledStationAETitle": "CT02"},
        {"ScheduledStationAETitle": "CT01", "Modality": "CT"},
        {"ScheduledProcedureStepStartDate": "20240115"},
        {"ScheduledProcedureStepStartDate": "20240111-20240120"},
        {"ScheduledProcedureStepStartDate": "20240115-"},
        {"ScheduledProcedureStepStartDate": "-20240110"},
        {"ScheduledProcedureStepStartTime": "073000-120000"},
        {
            "ScheduledProcedureStepStartDate": "20240110-20240120",
            "ScheduledProcedureStepStartTime": "120000-080000",
        },
        {
            "ScheduledProcedureStepStartDate": "20240115",
            "ScheduledProcedureStepStartTime": "100000-170000",
        },
        {"ScheduledPerformingPhysicianName": "Ro*"},
        {"ScheduledPerformingPhysicianName": "Ross^Bob"},
        {"top_PatientName": "Müller*"},
        {"top_PatientName": "M?ller*"},
        {"top_PatientName": "Doe*", "Modality": "US"},
        {"top_PatientID": "PID0003"},
        {"top_AccessionNumber": "ACC0004"},
    ],
    ids=lambda keys: ",".join(f"{k}={v}" for k, v in keys.items()) or "all",
)
def test_same_steps_as_wlmscpfs(peers: Peers, keys: dict[str, str]) -> None:
    identifier = query(**keys)
    identifier.SpecificCharacterSet = "ISO_IR 100"
    ours = sps_ids(find_worklist(peers.conn, identifier))
    theirs = _dcmtk_answer(peers, identifier)
    assert ours == theirs
    assert theirs  # every query of the table finds something: no vacuous agreement
