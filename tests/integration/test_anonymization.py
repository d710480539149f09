"""De-identification on receipt (PS3.15 Basic Profile), against DCMTK's storescu."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.integration.helpers import dataset_bytes
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import run_tool
from xvactor.testing.node import NodeHandle

pytestmark = pytest.mark.dcmtk

SECRETS = ("Müller^Jürgen", "PID-SECRET-42", "Secret Hospital", "ACC-SECRET-7")


def identifiable(
    study: str, tmp_path: Path, index: int, series: str | None = None
) -> tuple[pydicom.Dataset, Path]:
    ds = make_dataset(
        patient_name=SECRETS[0], patient_id=SECRETS[1], study_uid=study, series_uid=series
    )
    ds.InstitutionName = SECRETS[2]
    ds.AccessionNumber = SECRETS[3]
    ds.add_new(0x00091010, "LO", "private secret")  # a private element (group 0009)
    ds.add_new(0x00090010, "LO", "ACME")  # its creator
    path = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / f"in{index}.dcm")
    return ds, path


def send(handle: NodeHandle, aet: str, *files: Path) -> None:
    result = run_tool(
        "storescu", "-aet", aet, "-aec", handle.ae_title, handle.host, str(handle.port),
        *map(str, files),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def stored_files(handle: NodeHandle) -> list[Path]:
    handle.write_pending()  # small instances the catalog still holds, as a reader does
    return sorted((handle.data_dir / "studies").rglob("*.dcm"))


def test_node_wide_anonymization(make_node: Any, tmp_path: Path) -> None:
    handle = make_node(anonymize=True)
    study, series = generate_uid(), generate_uid()
    originals = [identifiable(study, tmp_path, index, series) for index in range(2)]
    send(handle, "MODALITY", *(path for _, path in originals))

    stored = stored_files(handle)
    assert len(stored) == 2
    results = [pydicom.dcmread(path) for path in stored]
    original_uids = {str(ds.SOPInstanceUID) for ds, _ in originals} | {study, series}
    # Consistent remapping: one new study and series, fresh instance UIDs.
    assert len({str(ds.StudyInstanceUID) for ds in results}) == 1
    assert len({str(ds.SeriesInstanceUID) for ds in results}) == 1
    for ds in results:
        assert str(ds.StudyInstanceUID) not in original_uids
        assert str(ds.SeriesInstanceUID) not in original_uids
        assert str(ds.SOPInstanceUID) not in original_uids
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == originals[0][0].SOPClassUID
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert str(ds.PatientName) != SECRETS[0]
        assert ds.PatientID != SECRETS[1]
        assert ds.get("InstitutionName", "") != SECRETS[2]
        assert ds.get("AccessionNumber", "") != SECRETS[3]
        assert 0x00091010 not in ds
    pixels = {ds.PixelData for ds in results}
    assert pixels == {ds.PixelData for ds, _ in originals}
    # Nothing identifying reached the disk: files, spool, catalog and its WAL.
    for path in handle.data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode("latin-1") not in raw, (path, secret)
            assert study.encode() not in raw, path
    secret_file = handle.data_dir / ".deidentification-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_per_client_anonymization(make_node: Any, tmp_path: Path) -> None:
    handle = make_node(
        clients=[
            {"name": "research", "ae_title": "RESEARCH", "anonymize": True},
            {"name": "clinic", "ae_title": "CLINIC"},
        ]
    )
    first, first_path = identifiable(generate_uid(), tmp_path, 1)
    _, second_path = identifiable(generate_uid(), tmp_path, 2)
    send(handle, "RESEARCH", first_path)
    send(handle, "CLINIC", second_path)
    by_patient = {pydicom.dcmread(p).PatientID: p for p in stored_files(handle)}
    assert len(by_patient) == 2
    # The clinic's instance is kept bit for bit; the research one is de-identified.
    assert dataset_bytes(by_patient[SECRETS[1]]) == dataset_bytes(second_path)
    (other,) = (p for pid, p in by_patient.items() if pid != SECRETS[1])
    assert pydicom.dcmread(other).PatientIdentityRemoved == "YES"
    assert first.SOPInstanceUID not in str(other)
