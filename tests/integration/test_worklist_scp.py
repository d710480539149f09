"""Modality Worklist SCP (PS3.4 K) against DCMTK's findscu -W, items added while it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.unit.test_worklist_helpers import make_item, query, sps_ids, write_wl
from xvactor.testing.dcmtk import run_tool
from xvactor.testing.node import NodeHandle

pytestmark = pytest.mark.dcmtk


def xvactor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xvactor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def findscu_w(node: NodeHandle, keys: Dataset, tmp_path: Path, name: str) -> list[Dataset]:
    path = tmp_path / f"{name}.dcm"
    keys.save_as(path, implicit_vr=False, little_endian=True)
    out = tmp_path / f"rsp-{name}"
    out.mkdir()
    result = run_tool(
        "findscu", "-W", "-aet", "CT01", "-aec", node.ae_title, "-X", "-od", str(out),
        node.host, str(node.port), str(path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


@pytest.fixture
def worklist_node(make_node: Callable[..., NodeHandle], tmp_path: Path) -> NodeHandle:
    node = make_node(clients=[{"name": "modality", "allow": ["echo", "store", "query"]}])
    items = [
        make_item(1, date="20240115", time="083000", modality="CT", stations=("CT01",)),
        make_item(2, date="20240115", time="143000", modality="CT", stations=("CT02",)),
        make_item(3, date="20240116", time="090000", modality="MR", physician="Müller^Anna"),
        make_item(4, date="20240120", patient_name="Müller^Jürgen", modality="CT"),
    ]
    files = [write_wl(item, tmp_path / f"item{n}.wl") for n, item in enumerate(items, 1)]
    added = xvactor("worklist", "add", "--data-dir", str(node.data_dir), *map(str, files))
    assert added.returncode == 0, added.stderr
    return node


def test_station_and_date_range(worklist_node: NodeHandle, tmp_path: Path) -> None:
    keys = query(ScheduledStationAETitle="CT01", ScheduledProcedureStepStartDate="20240115")
    assert sps_ids(findscu_w(worklist_node, keys, tmp_path, "station")) == {"SPS0001"}
    keys = query(ScheduledProcedureStepStartDate="20240115-20240116")
    assert sps_ids(findscu_w(worklist_node, keys, tmp_path, "range")) == {
        "SPS0001",
        "SPS0002",
        "SPS0003",
    }
    keys = query(ScheduledProcedureStepStartDate="20240116-", Modality="CT")
    assert sps_ids(findscu_w(worklist_node, keys, tmp_path, "open")) == {"SPS0004"}


def test_combined_date_time_and_physician_wildcard(
    worklist_node: NodeHandle, tmp_path: Path
) -> None:
    keys = query(
        ScheduledProcedureStepStartDate="20240115", ScheduledProcedureStepStartTime="1200-"
    )
    assert sps_ids(findscu_w(worklist_node, keys, tmp_path, "afternoon")) == {"SPS0002"}
    keys = query(ScheduledPerformingPhysicianName="Müller*")
    keys.SpecificCharacterSet = "ISO_IR 100"
    responses = findscu_w(worklist_node, keys, tmp_path, "physician")
    assert sps_ids(responses) == {"SPS0003"}


def test_latin1_patient_name_returned_intact(worklist_node: NodeHandle, tmp_path: Path) -> None:
    keys = query(top_PatientName="Müller^J*")
    keys.SpecificCharacterSet = "ISO_IR 100"
    responses = findscu_w(worklist_node, keys, tmp_path, "patient")
    assert sps_ids(responses) == {"SPS0004"}
    assert responses[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(responses[0].PatientName) == "Müller^Jürgen"


def test_list_and_remove_while_running(worklist_node: NodeHandle, tmp_path: Path) -> None:
    listed = xvactor("worklist", "list", "--json", "--data-dir", str(worklist_node.data_dir))
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert sorted(item["scheduled_procedure_step_id"] for item in items) == [
        "SPS0001",
        "SPS0002",
        "SPS0003",
        "SPS0004",
    ]
    first = str(items[0]["item_id"])
    removed = xvactor("worklist", "remove", first, "--data-dir", str(worklist_node.data_dir))
    assert removed.returncode == 0, removed.stderr
    assert len(sps_ids(findscu_w(worklist_node, query(), tmp_path, "all"))) == 3


def test_query_refused_without_permission(
    make_node: Callable[..., NodeHandle], tmp_path: Path
) -> None:
    node = make_node()  # default clients: echo and store only
    path = tmp_path / "q.dcm"
    query().save_as(path, implicit_vr=False, little_endian=True)
    result = run_tool("findscu", "-W", "-aec", node.ae_title, node.host, str(node.port), str(path))
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stdout + result.stderr
