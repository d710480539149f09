"""``xvactor bench`` end to end: against DCMTK storescp and against ``xvactor serve``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from xvactor import cli_bench
from xvactor.testing.dcmtk import StoreSCP
from xvactor.testing.procs import ServeProcess

pytestmark = pytest.mark.dcmtk


def _bench(*argv: str) -> int:
    return cli_bench.main([*argv, "--no-progress", "--timeout", "10"])


def test_store_against_storescp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StoreSCP(tmp_path / "in", fork=True, extra_args=("-pdu", "131072")) as scp:
        port = str(scp.port)
        code = _bench(
            "store", scp.host, port, "--aec", scp.ae_title, "-n", "2", "--count", "20",
            "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html"),
        )  # fmt: skip
        received = scp.received()
        assert code == 0, capsys.readouterr()
        assert _bench("echo", scp.host, port, "--aec", scp.ae_title, "--count", "5",
                      "--new-association") == 0  # fmt: skip
    assert len(received) == 40
    assert len({path.name for path in received}) == 40  # fresh SOP Instance UIDs
    report = json.loads((tmp_path / "r.json").read_text())
    (run,) = report["runs"]
    assert run["succeeded"] == 40 and run["statuses"] == {"0x0000": 40}
    assert run["associations_established"] == 2 and run["processes"] == 2
    assert run["per_second"] > 0 and run["latency_ms"]["p99_ms"] > 0
    assert run["bytes"] == 40 * report["workload"]["instance_bytes"][0]
    assert "<svg" in (tmp_path / "r.html").read_text()
    out = capsys.readouterr().out
    assert "40 of 40 succeeded" in out and "5 of 5 succeeded" in out
    assert "5 established" in out  # a new association per echo


def test_open_loop_rate_and_failure_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with StoreSCP(tmp_path / "in", fork=True) as scp:
        started = time.monotonic()
        code = _bench(
            "store", scp.host, str(scp.port), "--aec", scp.ae_title, "-n", "2",
            "--rate", "40", "--duration", "1", "--json", str(tmp_path / "r.json"),
        )  # fmt: skip
        assert code == 0
        assert time.monotonic() - started < 10
        sent = len(scp.received())
    assert 36 <= sent <= 40  # 40/s for 1 s, split over two associations
    port = scp.port  # stopped: nothing listens there now
    assert _bench("store", "127.0.0.1", str(port), "--aec", "X", "--count", "2") == 1
    assert "refused" in capsys.readouterr().out


def test_store_echo_find_against_xvactor_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = '[[clients]]\nname = "all"\nallow = ["echo", "store", "query"]\n'
    with ServeProcess(tmp_path / "node", ae_title="NODE", config=clients) as node:
        port = str(node.port)
        code = _bench(
            "store", "127.0.0.1", port, "--aec", "NODE", "-n", "2", "--count", "10",
            "--size", "tiny", "--compare", "again=NODE@127.0.0.1:" + port,
        )  # fmt: skip
        assert code == 0
        deadline = time.monotonic() + 10
        while len(list((tmp_path / "node").rglob("*.dcm"))) < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _bench("echo", "127.0.0.1", port, "--aec", "NODE", "--count", "3") == 0
        code = _bench("find", "127.0.0.1", port, "--aec", "NODE", "--count", "3",
                      "--query", "QueryRetrieveLevel=STUDY;PatientID=XVBENCH;StudyInstanceUID",
                      "--json", str(tmp_path / "f.json"))  # fmt: skip
        out = capsys.readouterr().out
        assert code == 0, out
    stored = list((tmp_path / "node").rglob("*.dcm"))
    assert len({p.name for p in stored if "spool" not in p.parts}) >= 40
    assert "ratios to NODE@127.0.0.1" in out
    (run,) = json.loads((tmp_path / "f.json").read_text())["runs"]
    assert run["matches"] == 3  # one study (the bench's), found by each of 3 queries
    assert run["first_response_ms"]["count"] == 3
