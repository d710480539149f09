"""The ``xvactor`` command as a user runs it: exit codes and one-line errors."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP, dcmtk_env, require_tool, run_tool
from xvactor.testing.net import free_port
from xvactor.testing.node import NodeHandle
from xvactor.testing.procs import ServeProcess

XVACTOR = [sys.executable, "-m", "xvactor"]


def xvactor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XVACTOR, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.dcmtk
def test_echo_against_dcmtk_storescp(tmp_path: Path) -> None:
    with StoreSCP(tmp_path) as scp:
        result = xvactor("echo", "127.0.0.1", str(scp.port), "--aec", scp.ae_title)
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout


@pytest.mark.dcmtk
def test_echo_a_named_destination(tmp_path: Path) -> None:
    with StoreSCP(tmp_path / "scp") as scp:
        config = tmp_path / "client.toml"
        config.write_text(
            f'ae_title = "MODALITY"\n[[destinations]]\nname = "archive"\n'
            f'ae_title = "{scp.ae_title}"\nhost = "127.0.0.1"\nport = {scp.port}\n'
        )
        result = xvactor("echo", "--to", "archive", "--config", str(config))
        assert result.returncode == 0, result.stderr
        assert f"{scp.ae_title}@127.0.0.1:{scp.port}: success" in result.stdout
        unknown = xvactor("echo", "--to", "nowhere", "--config", str(config))
    assert unknown.returncode == 2
    assert "no destination named 'nowhere' (configured: archive)" in one_line_error(unknown)
    assert xvactor("echo").returncode == 2


def test_echo_refused() -> None:
    result = xvactor("echo", "127.0.0.1", str(free_port()))
    assert result.returncode == 1
    assert "connection refused" in one_line_error(result)


def test_echo_rejected_with_reason(node: NodeHandle) -> None:
    result = xvactor("echo", node.host, str(node.port), "--aec", "WRONG")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "rejected" in line
    assert "Called AE title not recognised" in line


def test_echo_timed_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        result = xvactor("echo", "127.0.0.1", str(port), "--timeout", "1")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "timed out" in line or "aborted" in line


def test_echo_our_node_succeeds(node: NodeHandle) -> None:
    result = xvactor("echo", node.host, str(node.port), "--aec", node.ae_title)
    assert result.returncode == 0, result.stderr


def test_config_error_is_one_line_with_key_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[[listeners]]\nhost = '127.0.0.1'\nprot = 104\n")
    result = xvactor("serve", "--config", str(config))
    assert result.returncode == 2
    assert "listeners[0].prot: unknown key" in one_line_error(result)


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = xvactor("serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "cannot read" in one_line_error(result)


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "node.toml"
        config.write_text(f"[[listeners]]\nhost = '127.0.0.1'\nport = {port}\n")
        result = xvactor("serve", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "in use" in one_line_error(result)


@pytest.mark.dcmtk
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stores_then_stops_on_signal_with_exit_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    with ServeProcess(tmp_path / "data") as node:
        ds = make_dataset()
        source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "x.dcm")
        sent = run_tool("storescu", "-aec", "NODE", "127.0.0.1", str(node.port), str(source))
        assert sent.returncode == 0, sent.stderr
        stderr = node.stop(signum)
    assert node.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "called=NODE outcome=released client=anonymous allowed=echo,store" in stderr
    assert "echo=0 stored=1 failed=0" in stderr
    assert list(node.data_dir.rglob(f"{ds.SOPInstanceUID}.dcm"))


@pytest.mark.dcmtk
def test_sigterm_mid_transfer_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    """Every C-STORE answered Success before the stop is on disk and in the catalog."""
    files = []
    for index in range(150):
        ds = make_dataset(rows=32, columns=32)
        files.append(
            str(write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / f"{index}.dcm"))
        )
    data = tmp_path / "data"
    with ServeProcess(data) as node:
        sender = subprocess.Popen(
            [require_tool("storescu"), "-v", "-aec", "NODE", "127.0.0.1", str(node.port), *files],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dcmtk_env(),
        )
        try:
            # Stop the node once some instances are filed, while the sender is still going.
            deadline = time.monotonic() + 60
            while len(list(data.glob("studies/*/*/*.dcm"))) < 20:
                assert time.monotonic() < deadline, "nothing was filed"
                time.sleep(0.01)
            node_err = node.stop()
            sender_out, _ = sender.communicate(timeout=60)
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.communicate()
    assert node.returncode == 0, node_err
    acknowledged = sender_out.count("Received Store Response (Success)")
    assert 0 < acknowledged < len(files), sender_out[-2000:]
    stored = list((data / "studies").rglob("*.dcm"))
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        catalogued = conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
    # Nothing acknowledged is missing; nothing is on disk without its row (or vice versa).
    assert catalogued >= acknowledged
    assert len(stored) == catalogued
    assert [p for p in (data / ".spool").rglob("*") if p.is_file()] == []
