"""Q/R with the default process layout: receive workers answer FIND, MOVE and GET, and a
``store --queue`` is delivered by the node's main process exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP, run_tool
from xvactor.testing.net import free_port
from xvactor.testing.procs import ServeProcess

pytestmark = pytest.mark.dcmtk


def _config(data_dir: Path, move_port: int, archive_port: int) -> str:
    return f"""
data_dir = "{data_dir}"

[[clients]]
name = "all"
allow = ["echo", "store", "query", "retrieve"]

[[destinations]]
name = "mover"
ae_title = "MOVESCU"
host = "127.0.0.1"
port = {move_port}

[[destinations]]
name = "archive"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = {archive_port}
"""


def test_workers_serve_find_move_get_and_the_main_process_delivers_the_queue(
    tmp_path: Path,
) -> None:
    move_port = free_port()
    study = generate_uid()
    datasets = [make_dataset(study_uid=study, rows=8, columns=8) for _ in range(3)]
    files = [
        write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / f"w{index}.dcm")
        for index, ds in enumerate(datasets)
    ]
    uids = {str(ds.SOPInstanceUID) for ds in datasets}
    with StoreSCP(tmp_path / "archive", ae_title="ARCHIVE") as archive:
        node = ServeProcess(
            tmp_path / "node", workers=2, config=_config(tmp_path / "node", move_port, archive.port)
        )
        with node:
            run_tool(
                "storescu", "-aec", node.ae_title, "127.0.0.1", str(node.port), *files,
                check=True,
            )  # fmt: skip
            answers = tmp_path / "answers"
            answers.mkdir()
            found = run_tool(
                "findscu", "-S", "-aec", node.ae_title, "-k", "QueryRetrieveLevel=SERIES",
                "-k", f"StudyInstanceUID={study}", "-k", "SeriesInstanceUID",
                "-k", "NumberOfSeriesRelatedInstances", "-X", "-od", str(answers),
                "127.0.0.1", str(node.port),
            )  # fmt: skip
            assert found.returncode == 0, found.stderr
            series = [dcmread(p) for p in answers.iterdir()]
            counted = {
                str(r.SeriesInstanceUID): int(r.NumberOfSeriesRelatedInstances) for r in series
            }
            assert counted == {str(ds.SeriesInstanceUID): 1 for ds in datasets}

            moved = tmp_path / "moved"
            moved.mkdir()
            run_tool(
                "movescu", "-S", "-aet", "MOVESCU", "-aec", node.ae_title, "-aem", "MOVESCU",
                "+P", str(move_port), "-od", str(moved), "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(node.port), check=True,
            )  # fmt: skip
            assert {str(dcmread(p).SOPInstanceUID) for p in moved.iterdir()} == uids

            got = tmp_path / "got"
            got.mkdir()
            run_tool(
                "getscu", "-S", "-aec", node.ae_title, "-od", str(got),
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                "127.0.0.1", str(node.port), check=True,
            )  # fmt: skip
            assert {str(dcmread(p).SOPInstanceUID) for p in got.iterdir()} == uids

            queued = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "xvactor",
                    "store",
                    "--to",
                    "archive",
                    "--queue",
                    "--config",
                    str(node.data_dir.parent / "node.toml"),
                    *map(str, files),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert queued.returncode == 0, queued.stderr
            deadline = time.monotonic() + 30
            while len(archive.received()) < len(files) and time.monotonic() < deadline:
                time.sleep(0.1)  # delivery is asynchronous by design; bounded wait
        assert sorted(str(dcmread(p).SOPInstanceUID) for p in archive.received()) == sorted(uids)
