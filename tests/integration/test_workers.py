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
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.integration.helpers import storescu
from xvactor.dicom.qr_scu import echo
from xvactor.dicom.scu import Peer
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.net import wait_for_port
from xvactor.testing.node import write_pending
from xvactor.testing.procs import ServeProcess, children, connection_holder

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
    write_pending(data)  # as a reader of the files does first
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


@pytest.mark.parametrize("inline_max_kb", [0, 64])
@pytest.mark.parametrize("policy", ["keep_first", "overwrite"])
def test_the_same_instances_from_four_senders_at_once_are_filed_once(
    tmp_path: Path, policy: str, inline_max_kb: int
) -> None:
    """Two receive processes race to file each instance: one row and one whole file each.

    With ``inline_max_kb = 0`` they race to link files at their names; with 64 the catalog
    holds each file until written there (by the end of the stop at the latest).
    """
    files = []
    for index in range(40):
        ds = make_dataset(rows=32, columns=32)
        path = tmp_path / f"same-{index}.dcm"
        files.append(str(write_in_transfer_syntax(ds, ExplicitVRLittleEndian, path)))
    config = f'duplicate_policy = "{policy}"\ninline_max_kb = {inline_max_kb}\n'
    with ServeProcess(tmp_path / "data", config=config) as node:
        senders = [storescu(node.port, files) for _ in range(4)]
        for process in senders:
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 0, output
        data = node.data_dir
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        rows = conn.execute("SELECT sop_instance_uid, path, size FROM instances").fetchall()
        pending = conn.execute("SELECT COUNT(*) FROM pending_files").fetchone()[0]
    assert len(rows) == 40
    assert pending == 0
    filed = sorted((data / "studies").rglob("*.dcm"))
    assert len(filed) == 40
    for uid, relative, size in rows:
        stored = data / relative
        assert stored.stat().st_size == size
        assert stored.name == f"{uid}.dcm"
    assert list((data / ".spool").rglob("*.dcm")) == []
    assert list((data / ".pending").glob("*")) == []


def _associate(port: int) -> Association:
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="NODE")
    assert assoc.is_established
    return assoc


def _worker_of(serve: ServeProcess, assoc: Association) -> int:
    transport = assoc.dul.socket
    assert transport is not None and transport.socket is not None
    peer_port = transport.socket.getsockname()[1]
    holder = connection_holder(children(serve.pid), serve.port, peer_port)
    assert holder is not None, "no receive worker holds the association"
    return holder


def _released(serve: ServeProcess, assoc: Association, worker: int) -> None:
    """Release ``assoc`` and wait until its worker has closed the connection (bounded)."""
    transport = assoc.dul.socket
    assert transport is not None and transport.socket is not None
    peer_port = transport.socket.getsockname()[1]
    assoc.release()
    deadline = time.monotonic() + 10
    while connection_holder([worker], serve.port, peer_port) is not None:
        assert time.monotonic() < deadline, "the worker kept a released connection"
        time.sleep(0.01)


def test_associations_go_to_the_worker_with_the_fewest(serve: ServeProcess) -> None:
    """Balanced by the node, not by whichever worker wakes first (xvactor.actors.dispatcher)."""
    held = [_associate(serve.port) for _ in range(6)]
    workers = [_worker_of(serve, assoc) for assoc in held]
    assert sorted(workers.count(w) for w in set(workers)) == [3, 3]
    # The workers tell the node when associations end: with two left on one worker, each
    # new association goes to the other one (taking turns would alternate).  Two, because
    # the connection ServeProcess probed the port with may still hold one worker until
    # its ACSE timeout (pynetdicom waits that long for an A-ASSOCIATE-RQ).
    kept = workers[0]
    keep = [i for i, worker in enumerate(workers) if worker == kept][:2]
    for index, (assoc, worker) in enumerate(zip(held, workers, strict=True)):
        if index not in keep:
            _released(serve, assoc, worker)
    went = []
    for _ in range(8):
        assoc = _associate(serve.port)
        went.append(_worker_of(serve, assoc))
        _released(serve, assoc, went[-1])
    for index in keep:
        held[index].release()
    assert went.count(kept) <= 1, went  # one may race ahead of its predecessor's end


def test_a_restart_sets_aside_the_files_an_interrupted_run_left_without_a_row(
    tmp_path: Path,
) -> None:
    """A file at its final name without a row was never acknowledged: out of the layout
    (never a half-written instance there), into .orphans; what was acknowledged stays."""
    data = tmp_path / "data"
    ds = make_dataset(rows=16, columns=16)
    sent = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "sent.dcm")
    with ServeProcess(data) as node:
        process = storescu(node.port, [str(sent)])
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
    stored = (
        data / "studies" / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    )
    assert stored.is_file()
    # What a crash between linking and committing leaves: a file, maybe incomplete.
    half = stored.with_name("1.2.826.0.1.3680043.8.498.1.dcm")
    half.write_bytes(stored.read_bytes()[:300])
    time.sleep(1.2)  # linked well before the next run starts (see orphans.CLOCK_MARGIN_NS)
    with ServeProcess(data) as node:
        deadline = time.monotonic() + 30
        while half.exists():
            assert time.monotonic() < deadline, "the orphan was not set aside"
            time.sleep(0.05)
        assert stored.is_file()
        stderr = node.stop()
    assert node.returncode == 0, stderr
    assert "set aside 1 instance file(s) no catalog row refers to" in stderr
    aside = data / ".orphans" / half.relative_to(data)
    assert aside.read_bytes() == stored.read_bytes()[:300]
