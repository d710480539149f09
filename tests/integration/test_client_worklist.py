"""Modality Worklist C-FIND from the client and ``xvactor worklist query``, against wlmscpfs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from xvactor.cli_query import main
from xvactor.client import Client
from xvactor.client.sync import SyncClient
from xvactor.testing.dcmtk import dcmtk_env, require_tool
from xvactor.testing.net import LOOPBACK, free_port, wait_for_port

pytestmark = pytest.mark.dcmtk

WLM_AE = "WLMSCP"
ITEMS = [
    ("Wl^One", "WL1", "ACC1", "CT"),
    ("Wl^Two", "WL2", "ACC2", "MR"),
    ("Wl^Three", "WL3", "ACC3", "CT"),
]


@dataclass(frozen=True)
class Worklist:
    port: int

    @property
    def dest(self) -> tuple[str, int, str]:
        return (LOOPBACK, self.port, WLM_AE)


def _item(name: str, patient_id: str, accession: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = generate_uid()
    ds.RequestedProcedureID = f"RP-{accession}"
    ds.RequestedProcedureDescription = "Test procedure"
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = "MODALITY1"
    step.ScheduledProcedureStepStartDate = "20240301"
    step.ScheduledProcedureStepStartTime = "0900"
    step.ScheduledPerformingPhysicianName = "Doc^Tor"
    step.ScheduledProcedureStepDescription = "Step"
    step.ScheduledProcedureStepID = f"SPS-{accession}"
    ds.ScheduledProcedureStepSequence = [step]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


@pytest.fixture(scope="module")
def worklist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worklist]:
    root = tmp_path_factory.mktemp("wlm")
    directory = root / WLM_AE
    directory.mkdir()
    (directory / "lockfile").touch()
    for index, fields in enumerate(ITEMS):
        _item(*fields).save_as(directory / f"item{index}.wl", enforce_file_format=True)
    port = free_port()
    with (root / "wlmscpfs.log").open("wb") as log:
        process = subprocess.Popen(
            [require_tool("wlmscpfs"), "-dfp", str(root), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dcmtk_env(),
            start_new_session=True,
        )
    try:
        wait_for_port(LOOPBACK, port, 10.0)
        yield Worklist(port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.asyncio
async def test_worklist_find_by_modality(worklist: Worklist) -> None:
    keys = {
        "PatientName": "",
        "AccessionNumber": "",
        "ScheduledProcedureStepSequence[0].Modality": "CT",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate": "",
    }
    async with Client(ae_title="XVCLIENT") as client:
        items = [m async for m in client.find(worklist.dest, keys, model="worklist")]
    assert sorted(str(m.AccessionNumber) for m in items) == ["ACC1", "ACC3"]
    for match in items:
        step = match.ScheduledProcedureStepSequence[0]
        assert step.Modality == "CT"
        assert step.ScheduledProcedureStepStartDate == "20240301"
        assert "QueryRetrieveLevel" not in match


def test_worklist_sync_facade_with_an_empty_sequence(worklist: Worklist) -> None:
    with SyncClient(ae_title="XVCLIENT") as client:
        items = client.find_all(
            worklist.dest,
            {"PatientID": "WL2", "ScheduledProcedureStepSequence": ""},
            model="worklist",
        )
    assert [str(m.PatientID) for m in items] == ["WL2"]
    assert items[0].ScheduledProcedureStepSequence[0].Modality == "MR"


def test_worklist_query_verb_with_findscu_style_keys(
    worklist: Worklist, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["worklist", "query", LOOPBACK, str(worklist.port), "-aec", WLM_AE]
    argv += ["-k", "(0040,0100)[0].(0008,0060)=MR", "-k", "PatientName", "-k", "0008,0050"]
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    # Columns in tag order, as the Identifier holds them.
    assert table[0].split() == [
        "AccessionNumber",
        "PatientName",
        "ScheduledProcedureStepSequence[0].Modality",
    ]
    assert any("Wl^Two" in line and "ACC2" in line and "MR" in line for line in table[2:])
    assert table[-1] == "(1 match)"


def test_worklist_query_json(worklist: Worklist, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["worklist", "query", LOOPBACK, str(worklist.port), "--aec", WLM_AE, "--json"]
    argv += ["-k", "PatientID=WL3", "-k", "ScheduledProcedureStepSequence[0].Modality"]
    assert main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer) == 1
    assert answer[0]["00100020"]["Value"] == ["WL3"]
    step = answer[0]["00400100"]["Value"][0]
    assert step["00080060"]["Value"] == ["CT"]
    assert answer[0]["00100020"]["vr"] == "LO"
