"""The client's C-FIND, C-MOVE and C-GET against DCMTK's dcmqrscp, in all three Q/R models.

One dcmqrscp archive per module, loaded with ``storescu``; every answer is compared with
what the test stored.  :class:`QRArchive` is also used by the CLI tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from xvactor.client import Client, NoAssociation, ServiceFailed
from xvactor.testing.datasets import make_dataset
from xvactor.testing.dcmtk import dcmtk_env, require_tool, run_tool
from xvactor.testing.net import LOOPBACK, free_port, wait_for_port

pytestmark = pytest.mark.dcmtk

ARCHIVE_AE = "ARCHIVE"
MOVE_AE = "XVCLIENT"


@dataclass
class QRArchive:
    """A running dcmqrscp holding :attr:`instances`, and the move destination it knows."""

    port: int
    move_port: int
    instances: list[Dataset] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def dest(self) -> tuple[str, int, str]:
        return (LOOPBACK, self.port, ARCHIVE_AE)

    def study(self, index: int) -> str:
        return sorted({str(ds.StudyInstanceUID) for ds in self.instances})[index]

    def uids(self, **match: str) -> set[str]:
        return {
            str(ds.SOPInstanceUID)
            for ds in self.instances
            if all(str(ds.get(k)) == v for k, v in match.items())
        }

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


def _config(directory: Path, port: int, move_port: int) -> Path:
    storage = directory / "db"
    storage.mkdir()
    config = directory / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        "HostTable BEGIN\n"
        f"xvclient = ({MOVE_AE}, {LOOPBACK}, {move_port})\n"
        "HostTable END\n"
        "VendorTable BEGIN\nVendorTable END\n"
        "AETable BEGIN\n"
        f"{ARCHIVE_AE} {storage} RW (200, 1024mb) ANY\n"
        "AETable END\n"
    )
    return config


def _corpus(directory: Path) -> tuple[list[Dataset], dict[str, Path]]:
    """Two patients: A with two studies (2+1 and 2 instances), B with one (1 instance)."""
    layout = [("PA", "Alpha^Ann", [[2, 1], [2]]), ("PB", "Beta^Bob", [[1]])]
    instances: list[Dataset] = []
    files: dict[str, Path] = {}
    seed = 0
    for patient_id, name, studies in layout:
        for series_sizes in studies:
            study = generate_uid()
            for size in series_sizes:
                series = generate_uid()
                for _ in range(size):
                    seed += 1
                    ds = make_dataset(
                        patient_id=patient_id,
                        patient_name=name,
                        study_uid=study,
                        series_uid=series,
                        seed=seed,
                    )
                    path = directory / f"in{seed:02d}.dcm"
                    ds.save_as(path, enforce_file_format=True)
                    instances.append(ds)
                    files[str(ds.SOPInstanceUID)] = path
    return instances, files


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QRArchive]:
    """A dcmqrscp (fork mode: its single-process mode crashes after a release) with data."""
    directory = tmp_path_factory.mktemp("dcmqrscp")
    port, move_port = free_port(), free_port()
    config = _config(directory, port, move_port)
    qr = QRArchive(port=port, move_port=move_port, log=directory / "dcmqrscp.log")
    qr.instances, qr.files = _corpus(directory)
    with qr.log.open("wb") as log:
        qr.process = subprocess.Popen(
            [require_tool("dcmqrscp"), "-c", str(config), "-v", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dcmtk_env(),
            start_new_session=True,
        )
    try:
        wait_for_port(LOOPBACK, port, 10.0)
        paths = [str(p) for p in qr.files.values()]
        run_tool("storescu", "-aec", ARCHIVE_AE, LOOPBACK, str(port), *paths, check=True)
        yield qr
    finally:
        os.killpg(qr.process.pid, signal.SIGTERM)
        try:
            qr.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(qr.process.pid, signal.SIGKILL)
            qr.process.wait()


def _same_instance(received: Path, original: Path) -> None:
    got, sent = pydicom.dcmread(received), pydicom.dcmread(original)
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert got.PixelData == sent.PixelData
    assert got.PatientName == sent.PatientName


@pytest.mark.asyncio
async def test_echo(archive: QRArchive) -> None:
    async with Client(ae_title=MOVE_AE) as client:
        assert await client.echo(archive.dest) == 0


@pytest.mark.asyncio
async def test_find_study_root_at_every_level(archive: QRArchive) -> None:
    study = archive.study(0)
    async with Client(ae_title=MOVE_AE) as client:
        studies = [m async for m in client.find(archive.dest, {"PatientID": "PA"})]
        series = [
            m
            async for m in client.find(
                archive.dest, {"StudyInstanceUID": study, "SeriesInstanceUID": ""}, level="SERIES"
            )
        ]
        images = [
            m
            async for m in client.find(
                archive.dest,
                {"StudyInstanceUID": study, "SeriesInstanceUID": "", "SOPInstanceUID": ""},
                level="IMAGE",
            )
        ]
    expected_studies = {
        str(ds.StudyInstanceUID) for ds in archive.instances if ds.PatientID == "PA"
    }
    assert {str(m.StudyInstanceUID) for m in studies} == expected_studies
    assert all(m.QueryRetrieveLevel == "STUDY" for m in studies)
    expected_series = {
        str(ds.SeriesInstanceUID) for ds in archive.instances if ds.StudyInstanceUID == study
    }
    assert {str(m.SeriesInstanceUID) for m in series} == expected_series
    # dcmqrscp answers IMAGE level across series once the study is given.
    assert {str(m.SOPInstanceUID) for m in images} == archive.uids(StudyInstanceUID=study)


@pytest.mark.asyncio
async def test_find_patient_root_and_patient_study_only(archive: QRArchive) -> None:
    async with Client(ae_title=MOVE_AE) as client:
        patients = [
            m
            async for m in client.find(
                archive.dest, {"PatientName": "", "PatientID": ""}, model="patient"
            )
        ]
        studies = [
            m
            async for m in client.find(
                archive.dest,
                {"PatientID": "PB", "StudyInstanceUID": ""},
                model="patient-study",
                level="STUDY",
            )
        ]
        wildcard = [
            m
            async for m in client.find(
                archive.dest, {"PatientName": "Alpha*", "PatientID": ""}, model="patient-study",
                level="PATIENT",
            )
        ]  # fmt: skip
    assert sorted((str(m.PatientID), str(m.PatientName)) for m in patients) == [
        ("PA", "Alpha^Ann"),
        ("PB", "Beta^Bob"),
    ]
    assert [str(m.StudyInstanceUID) for m in studies] == [
        str(ds.StudyInstanceUID) for ds in archive.instances if ds.PatientID == "PB"
    ]
    assert [str(m.PatientID) for m in wildcard] == ["PA"]


@pytest.mark.asyncio
async def test_leaving_a_find_early_ends_it_cleanly(archive: QRArchive) -> None:
    async with Client(ae_title=MOVE_AE, find_buffer=1) as client:
        async with client.find(
            archive.dest, {"StudyInstanceUID": "", "SOPInstanceUID": ""}, model="patient",
            level="PATIENT",
        ) as responses:  # fmt: skip
            async for _ in responses:
                break
        assert responses.outcome is not None
        assert responses.outcome.cancelled
        # Cancel (0xFE00) if the peer saw it in time, Success if it had already finished.
        assert responses.outcome.status in (0x0000, 0xFE00)
        assert responses.outcome.ok
        again = [m async for m in client.find(archive.dest, {"PatientID": "PB"})]
    assert len(again) == 1


@pytest.mark.asyncio
async def test_find_failure_status_raises(archive: QRArchive) -> None:
    async with Client(ae_title=MOVE_AE) as client:
        with pytest.raises(ServiceFailed) as failure:
            # Study Root at IMAGE level without the study's unique key: dcmqrscp refuses.
            _ = [m async for m in client.find(archive.dest, {"SOPInstanceUID": ""}, level="IMAGE")]
    assert failure.value.status & 0xF000 in (0xA000, 0xC000)
    assert "C-FIND failed with status 0x" in str(failure.value)


@pytest.mark.asyncio
async def test_no_association_is_one_clear_error(archive: QRArchive) -> None:
    async with Client(ae_title=MOVE_AE) as client:
        with pytest.raises(NoAssociation, match="connection refused"):
            await client.echo((LOOPBACK, free_port(), ARCHIVE_AE))
        with pytest.raises(NoAssociation, match="no presentation context for Modality Worklist"):
            _ = [m async for m in client.find(archive.dest, {"PatientID": ""}, model="worklist")]
        with pytest.raises(NoAssociation, match="rejected"):
            _ = [
                m async for m in client.find((LOOPBACK, archive.port, "NOBODY"), {"PatientID": ""})
            ]


@pytest.mark.asyncio
@pytest.mark.parametrize("model", ["study", "patient", "patient-study"])
async def test_move_to_our_storage_scp(archive: QRArchive, model: str, tmp_path: Path) -> None:
    study = archive.study(1)
    keys = {"StudyInstanceUID": study}
    if model != "study":
        keys["PatientID"] = next(
            str(ds.PatientID) for ds in archive.instances if ds.StudyInstanceUID == study
        )
    async with Client(ae_title=MOVE_AE) as client:
        result = await client.move(
            archive.dest, keys, model=model, level="STUDY", port=archive.move_port, bind=LOOPBACK,  # type: ignore[arg-type]
            out_dir=tmp_path,
        )  # fmt: skip
    expected = archive.uids(StudyInstanceUID=study)
    assert result.ok, result
    assert result.completed == len(expected)
    assert {r.sop_instance_uid for r in result.received} == expected
    for received in result.received:
        assert received.path is not None
        assert received.path.parent == tmp_path
        _same_instance(received.path, archive.files[received.sop_instance_uid])
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.asyncio
async def test_move_hands_instances_to_a_callback(archive: QRArchive) -> None:
    got: list[Dataset] = []

    async def on_instance(ds: Dataset) -> None:
        got.append(ds)

    async with Client(ae_title=MOVE_AE) as client:
        result = await client.move(
            archive.dest, {"PatientID": "PB"}, model="patient", level="PATIENT",
            port=archive.move_port, bind=LOOPBACK, on_instance=on_instance,
        )  # fmt: skip
    assert result.ok
    assert {str(ds.SOPInstanceUID) for ds in got} == archive.uids(PatientID="PB")
    assert all(r.path is None for r in result.received)
    assert got[0].file_meta.TransferSyntaxUID  # a full Part 10 dataset


@pytest.mark.asyncio
async def test_move_to_an_unknown_destination_reports_the_status(archive: QRArchive) -> None:
    async with Client(ae_title=MOVE_AE) as client:
        result = await client.move(
            archive.dest, {"PatientID": "PB"}, model="patient", level="PATIENT",
            move_destination="NOWHERE",
        )  # fmt: skip
    assert result.status == 0xA801  # Move Destination unknown (PS3.4 C.4.2.1.5)
    assert not result.ok
    assert result.received == ()


@pytest.mark.asyncio
@pytest.mark.parametrize("model", ["study", "patient", "patient-study"])
async def test_get_with_role_selection(archive: QRArchive, model: str) -> None:
    study = archive.study(0)
    keys = {"StudyInstanceUID": study}
    if model != "study":  # the unique key of the level above: the study's own patient
        keys["PatientID"] = next(
            str(ds.PatientID) for ds in archive.instances if ds.StudyInstanceUID == study
        )
    with tempfile.TemporaryDirectory() as out:
        async with Client(ae_title=MOVE_AE) as client:
            result = await client.get(archive.dest, keys, model=model, level="STUDY", out_dir=out)  # type: ignore[arg-type]
        expected = archive.uids(StudyInstanceUID=study)
        assert result.ok, result
        assert result.completed == len(expected)
        assert {r.sop_instance_uid for r in result.received} == expected
        for received in result.received:
            assert received.path is not None
            _same_instance(received.path, archive.files[received.sop_instance_uid])
