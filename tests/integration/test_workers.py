"""Receiving in worker processes (the default): concurrency, and a worker that dies."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from tests.integration.helpers import storescu
from xvactor.dicom.qr_scu import echo
from xvactor.dicom.scu import Peer
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.net import wait_for_port
from xvactor.testing.procs import ServeProcess, children

pytestmark = pytest.mark.dcmtk


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path / "data") as node:
        yield node


def test_four_concurrent_senders_all_stored(serve: ServeProcess, tmp_path: Path) -> None:
    port, data = serve.port, serve.data_dir
    assert len(children(serve.pid)) == 2
    batches = []
    for sender in range(4):
        files = []
        for index in range(40):
            ds = make_dataset(rows=32, columns=32)
            path = tmp_path / f"s{sender}-{index}.dcm"
            files.append(str(write_in_transfer_syntax(ds, ExplicitVRLittleEndian, path)))
        batches.append(files)
    senders = [storescu(port, files) for files in batches]
    for process in senders:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 160
    assert len(list((data / "studies").rglob("*.dcm"))) == 160


def test_killed_worker_is_replaced_and_the_node_keeps_serving(serve: ServeProcess) -> None:
    port = serve.port
    before = children(serve.pid)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    after: list[int] = []
    while time.monotonic() < deadline:
        after = children(serve.pid)
        if len(after) == 2 and not set(after) & set(before):
            break
        time.sleep(0.05)
    assert len(after) == 2
    assert not set(after) & set(before), "both workers are restarted with the receivers actor"
    wait_for_port("127.0.0.1", port, timeout=30)
    assert echo(Peer(host="127.0.0.1", port=port, called_ae_title="NODE")) == 0
    stderr = serve.stop()
    assert serve.returncode == 0, stderr
    assert "exited with status -9" in stderr


@pytest.mark.parametrize("policy", ["keep_first", "overwrite"])
def test_the_same_instances_from_four_senders_at_once_are_filed_once(
    tmp_path: Path, policy: str
) -> None:
    """Two receive processes race to file each instance: one row and one whole file each."""
    files = []
    for index in range(40):
        ds = make_dataset(rows=32, columns=32)
        path = tmp_path / f"same-{index}.dcm"
        files.append(str(write_in_transfer_syntax(ds, ExplicitVRLittleEndian, path)))
    config = f'duplicate_policy = "{policy}"\n'
    with ServeProcess(tmp_path / "data", config=config) as node:
        senders = [storescu(node.port, files) for _ in range(4)]
        for process in senders:
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 0, output
        data = node.data_dir
        with sqlite3.connect(data / "catalog.sqlite") as conn:
            rows = conn.execute("SELECT sop_instance_uid, path, size FROM instances").fetchall()
        assert len(rows) == 40
        filed = sorted((data / "studies").rglob("*.dcm"))
        assert len(filed) == 40
        for uid, relative, size in rows:
            stored = data / relative
            assert stored.stat().st_size == size
            assert stored.name == f"{uid}.dcm"
        assert list((data / ".spool").rglob("*.dcm")) == []
