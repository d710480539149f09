"""A large object (~300 MB) is received without the whole dataset in memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from xvactor.dicom.part10 import dataset_offset
from xvactor.testing.datasets import make_dataset
from xvactor.testing.dcmtk import run_tool
from xvactor.testing.procs import ServeProcess, peak_rss_mb

pytestmark = pytest.mark.dcmtk

FRAMES, ROWS, COLUMNS = 100, 1024, 1536  # 16 bit: 314,572,800 bytes of Pixel Data
CHUNK = 1 << 22


def write_large_file(path: Path) -> tuple[str, str]:
    """Write a multi-frame CT without building its pixel data in memory."""
    ds = make_dataset(rows=ROWS, columns=COLUMNS, bits_allocated=16)
    del ds.PixelData
    ds.NumberOfFrames = FRAMES
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    length = FRAMES * ROWS * COLUMNS * 2
    block = os.urandom(CHUNK)
    with path.open("ab") as fp:
        fp.write(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
        for _ in range(length // CHUNK):
            fp.write(block)
        fp.write(block[: length % CHUNK])
    return ds.SOPInstanceUID, dataset_digest(path)


def dataset_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        fp.seek(dataset_offset(fp))
        while chunk := fp.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.timeout(300)
def test_300_mb_instance_with_flat_memory(tmp_path: Path) -> None:
    source = tmp_path / "large.dcm"
    sop_instance_uid, digest = write_large_file(source)
    data = tmp_path / "data"
    with ServeProcess(data) as node:
        baseline = peak_rss_mb(node.pid)  # the node and its two receive workers
        sent = run_tool(
            "storescu", "-aec", "NODE", "-xe", "127.0.0.1", str(node.port), str(source),
            timeout=240,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        peak = peak_rss_mb(node.pid)
    stored = list(data.rglob(f"{sop_instance_uid}.dcm"))
    assert len(stored) == 1
    assert dataset_digest(stored[0]) == digest
    # The object is 300 MB; a process may grow by buffers, never by the object.
    growth = {pid: peak[pid] - baseline[pid] for pid in baseline}
    assert max(growth.values()) < 64, f"peak RSS growth per process (MB): {growth}"
