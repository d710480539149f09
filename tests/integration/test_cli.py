"""The ``xvactor`` command as a user runs it: exit codes and one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP, run_tool
from xvactor.testing.net import free_port, wait_for_port
from xvactor.testing.node import NodeHandle

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
    port = free_port()
    data = tmp_path / "data"
    process = subprocess.Popen(
        [*XVACTOR, "serve", "--port", str(port), "--aet", "NODE", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        ds = make_dataset()
        source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "x.dcm")
        sent = run_tool("storescu", "-aec", "NODE", "127.0.0.1", str(port), str(source))
        assert sent.returncode == 0, sent.stderr
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "association STORESCU@127.0.0.1" in stderr
    assert "1 stored" in stderr
    assert list(data.rglob(f"{ds.SOPInstanceUID}.dcm"))
