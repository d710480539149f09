"""Helpers shared by the integration tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydicom.dataset import Dataset

from xvactor.dicom.part10 import dataset_offset
from xvactor.testing.dcmtk import dcmtk_env, require_tool
from xvactor.testing.node import NodeHandle


def dataset_bytes(path: Path) -> bytes:
    """The dataset of a Part 10 file, without its preamble and File Meta."""
    with path.open("rb") as fp:
        offset = dataset_offset(fp)
        fp.seek(offset)
        return fp.read()


def stored_path(handle: NodeHandle, ds: Dataset) -> Path:
    """Where the node files ``ds`` (written there now if the catalog still holds it)."""
    handle.write_pending()
    return (
        handle.data_dir
        / "studies"
        / ds.StudyInstanceUID
        / ds.SeriesInstanceUID
        / f"{ds.SOPInstanceUID}.dcm"
    )


def storescu(port: int, files: list[str], *, called: str = "NODE") -> subprocess.Popen[str]:
    """DCMTK ``storescu`` sending ``files`` over one association (started, not waited for)."""
    return subprocess.Popen(
        [require_tool("storescu"), "-aec", called, "127.0.0.1", str(port), *files],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dcmtk_env(),
    )
