"""What a C-STORE is answered, read with a pynetdicom SCU that shows the exact status."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.association import Association

from tests.integration.helpers import stored_path
from xvactor.dicom.part10 import FileMeta, encode_file_meta
from xvactor.testing.datasets import make_dataset
from xvactor.testing.node import NodeHandle

CT = "1.2.840.10008.5.1.4.1.1.2"


@contextmanager
def associate(handle: NodeHandle) -> Iterator[Association]:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CT, [ExplicitVRLittleEndian])
    assoc = ae.associate(handle.host, handle.port, ae_title=handle.ae_title)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def send(handle: NodeHandle, ds: Dataset) -> Any:
    with associate(handle) as assoc:
        return assoc.send_c_store(ds)


def instance_count(handle: NodeHandle) -> int:
    return int(handle.catalog_rows("SELECT COUNT(*) FROM instances")[0][0])  # type: ignore[call-overload]


def leftovers(handle: NodeHandle) -> list[Path]:
    """Instance data left in the data directory: spooled or filed files."""
    return [
        p
        for directory in (".spool", "studies")
        for p in (handle.data_dir / directory).rglob("*")
        if p.is_file()
    ]


def test_success_status(node: NodeHandle) -> None:
    status = send(node, make_dataset())
    assert status.Status == 0x0000


def test_duplicate_keep_first_answers_success_and_keeps_first(node: NodeHandle) -> None:
    first = make_dataset(patient_name="First^Copy")
    second = copy.deepcopy(first)
    second.PatientName = "Second^Copy"
    assert send(node, first).Status == 0x0000
    assert send(node, second).Status == 0x0000
    assert instance_count(node) == 1
    assert b"First^Copy" in stored_path(node, first).read_bytes()
    assert node.catalog_rows("SELECT patient_name FROM patients") == [("First^Copy",)]


def test_duplicate_overwrite_replaces(make_node: Any) -> None:
    handle = make_node(duplicate_policy="overwrite")
    first = make_dataset(patient_name="First^Copy")
    second = copy.deepcopy(first)
    second.PatientName = "Second^Copy"
    assert send(handle, first).Status == 0x0000
    assert send(handle, second).Status == 0x0000
    assert instance_count(handle) == 1
    assert b"Second^Copy" in stored_path(handle, first).read_bytes()


def test_duplicate_reject_answers_0111_with_comment(make_node: Any) -> None:
    handle = make_node(duplicate_policy="reject")
    ds = make_dataset()
    assert send(handle, ds).Status == 0x0000
    status = send(handle, ds)
    assert status.Status == 0x0111
    assert "already stored" in status.ErrorComment
    assert instance_count(handle) == 1


def test_missing_study_uid_cannot_understand_and_leaves_nothing(node: NodeHandle) -> None:
    ds = make_dataset()
    del ds.StudyInstanceUID
    status = send(node, ds)
    assert status.Status == 0xC000
    assert "StudyInstanceUID" in status.ErrorComment
    assert instance_count(node) == 0
    assert leftovers(node) == []


def test_unparseable_dataset_cannot_understand_and_leaves_nothing(
    node: NodeHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset whose bytes are not DICOM: an element claims more bytes than follow."""
    uid = "1.2.826.0.1.3680043.8.498.1"
    meta = encode_file_meta(
        FileMeta(
            sop_class_uid=CT,
            sop_instance_uid=uid,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            implementation_class_uid="1.2.3",
            implementation_version_name="TEST",
            source_ae_title="",
        )
    )
    garbage = b"\x08\x00\x18\x00UI\xff\x7f" + b"1.2" + b"\x00" * 5
    path = tmp_path / "garbage.dcm"
    path.write_bytes(meta + garbage)
    # Send the file's bytes as they are: pynetdicom would refuse to encode a bad dataset.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    with associate(node) as assoc:
        status = assoc.send_c_store(path)
    assert status.Status == 0xC000
    assert status.ErrorComment
    assert instance_count(node) == 0
    assert leftovers(node) == []


def test_disk_floor_answers_out_of_resources_and_leaves_nothing(make_node: Any) -> None:
    handle = make_node(min_free_disk_mb=1 << 40)
    status = send(handle, make_dataset())
    assert status.Status == 0xA700
    assert "disk" in status.ErrorComment
    assert instance_count(handle) == 0
    assert leftovers(handle) == []


def test_pynetdicom_reactor_fallback_still_receives(make_node: Any) -> None:
    handle = make_node(reactor="pynetdicom")
    ds = make_dataset()
    assert send(handle, ds).Status == 0x0000
    assert stored_path(handle, ds).is_file()
    assert instance_count(handle) == 1
