"""A node killed outright (SIGKILL, every process at once) loses no acknowledged instance.

Small instances are acknowledged once the catalog holds them; their files are written at
their names a few milliseconds later (``xvactor.storage.pending``).  Killing the whole node
right after the sender finishes leaves some of them held only by the catalog: the next
start must write them, so that every acknowledged instance has its row and its whole file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from tests.integration.helpers import dataset_bytes
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import dcmtk_env, require_tool
from xvactor.testing.procs import ServeProcess, process_tree


@pytest.mark.dcmtk
def test_sigkill_of_every_process_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    sent: dict[str, Path] = {}
    for index in range(120):
        ds = make_dataset(rows=32, columns=32)
        path = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / f"{index}.dcm")
        sent[str(ds.SOPInstanceUID)] = path
    data = tmp_path / "data"
    with ServeProcess(data) as node:
        result = subprocess.run(
            [require_tool("storescu"), "-aec", "NODE", "127.0.0.1", str(node.port),
             *map(str, sent.values())],
            capture_output=True, text=True, env=dcmtk_env(), timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        for pid in process_tree(node.pid):  # no one gets to finish anything
            os.kill(pid, signal.SIGKILL)
        node.stop()
    # Whatever the kill left held in the catalog is written when the node starts again.
    with ServeProcess(data):
        pass
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        rows = dict(conn.execute("SELECT sop_instance_uid, path FROM instances").fetchall())
        held = conn.execute("SELECT COUNT(*) FROM pending_files").fetchone()[0]
    assert set(rows) == set(sent)
    assert held == 0
    for uid, source in sent.items():
        assert dataset_bytes(data / rows[uid]) == dataset_bytes(source), uid
