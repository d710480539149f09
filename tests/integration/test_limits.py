"""max_associations: the next association is rejected transiently, the others go on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from tests.integration.helpers import storescu
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import run_tool
from xvactor.testing.procs import ServeProcess

pytestmark = pytest.mark.dcmtk

VERIFICATION = "1.2.840.10008.1.1"


@contextmanager
def held(host: str, port: int, count: int) -> Iterator[list[Association]]:
    """``count`` established associations, kept open for the block."""
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(VERIFICATION)
    held: list[Association] = []
    try:
        for _ in range(count):
            assoc = ae.associate(host, port, ae_title="NODE")
            assert assoc.is_established
            held.append(assoc)
        yield held
    finally:
        for assoc in held:
            if assoc.is_established:
                assoc.release()


def probe(port: int) -> str:
    result = run_tool("echoscu", "-aec", "NODE", "127.0.0.1", str(port))
    return "accepted" if result.returncode == 0 else result.stdout + result.stderr


def eventually_accepted(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (outcome := probe(port)) != "accepted":
        assert time.monotonic() < deadline, outcome
        time.sleep(0.05)


def check_limit(port: int, limit: int) -> None:
    with held("127.0.0.1", port, limit) as associations:
        outcome = probe(port)
        assert "Rejected Transient" in outcome, outcome
        assert "Local Limit Exceeded" in outcome, outcome
        # The established associations are not disturbed.
        for assoc in associations:
            assert assoc.send_c_echo().Status == 0x0000
        associations[0].release()
        eventually_accepted(port)  # the slot frees when the association ends


def test_limit_in_one_process(make_node: Any) -> None:
    handle = make_node(max_associations=2, ae_title="NODE")
    check_limit(handle.port, 2)


def test_limit_is_exact_across_worker_processes(tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "data", config="max_associations = 3") as node:
        check_limit(node.port, 3)


def test_burst_of_storescu_processes(tmp_path: Path) -> None:
    senders, per_sender = 8, 15
    batches = []
    for sender in range(senders):
        files = []
        for index in range(per_sender):
            ds = make_dataset(rows=16, columns=16)
            path = tmp_path / f"{sender}-{index}.dcm"
            files.append(str(write_in_transfer_syntax(ds, ExplicitVRLittleEndian, path)))
        batches.append(files)
    with ServeProcess(tmp_path / "data", config="max_associations = 2") as node:
        processes = [storescu(node.port, files) for files in batches]
        outputs = [(p.wait(timeout=120), p.communicate()[0]) for p in processes]
        stderr = node.stop()
    accepted = [out for code, out in outputs if code == 0]
    limited = [out for code, out in outputs if code != 0]
    assert all("Local Limit Exceeded" in out for out in limited), limited
    assert accepted, "no sender got through"
    stored = list((tmp_path / "data" / "studies").rglob("*.dcm"))
    assert len(stored) == per_sender * len(accepted)
    assert node.returncode == 0, stderr
    assert stderr.count("outcome=rejected client=anonymous") == len(limited)
    assert stderr.count('reason="max_associations (2) reached"') == len(limited)
