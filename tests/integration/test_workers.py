"""Receiving in worker processes (the default): concurrency, and a worker that dies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from xvactor.dicom.echo import echo
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import dcmtk_env, require_tool
from xvactor.testing.net import free_port, wait_for_port
from xvactor.testing.procs import children, wait_for_children

pytestmark = pytest.mark.dcmtk


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    data = tmp_path / "data"
    node = subprocess.Popen(
        [sys.executable, "-m", "xvactor", "serve", "--port", str(port), "--aet", "NODE",
         "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        wait_for_children(node.pid, 2)
        yield node, port, data
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
        try:
            node.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            node.communicate()


def test_four_concurrent_senders_all_stored(
    serve: tuple[subprocess.Popen[str], int, Path], tmp_path: Path
) -> None:
    node, port, data = serve
    assert len(children(node.pid)) == 2
    batches = []
    for sender in range(4):
        files = []
        for index in range(40):
            ds = make_dataset(rows=32, columns=32)
            path = tmp_path / f"s{sender}-{index}.dcm"
            files.append(str(write_in_transfer_syntax(ds, ExplicitVRLittleEndian, path)))
        batches.append(files)
    senders = [
        subprocess.Popen(
            [require_tool("storescu"), "-aec", "NODE", "127.0.0.1", str(port), *files],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dcmtk_env(),
        )
        for files in batches
    ]
    for process in senders:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 160
    assert len(list((data / "studies").rglob("*.dcm"))) == 160


def test_killed_worker_is_replaced_and_the_node_keeps_serving(
    serve: tuple[subprocess.Popen[str], int, Path],
) -> None:
    node, port, _ = serve
    before = children(node.pid)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    after: list[int] = []
    while time.monotonic() < deadline:
        after = children(node.pid)
        if len(after) == 2 and not set(after) & set(before):
            break
        time.sleep(0.05)
    assert len(after) == 2
    assert not set(after) & set(before), "both workers are restarted with the receivers actor"
    wait_for_port("127.0.0.1", port, timeout=30)
    assert echo("127.0.0.1", port, called_ae_title="NODE").ok
    node.send_signal(signal.SIGTERM)
    _, stderr = node.communicate(timeout=60)
    assert node.returncode == 0, stderr
    assert "exited with status -9" in stderr
