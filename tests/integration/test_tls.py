"""TLS listeners against DCMTK's echoscu and storescu (certificates made at test time)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from tests.integration.helpers import stored_path
from xvactor.testing.certs import Pki, make_pki
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import run_tool
from xvactor.testing.net import free_port
from xvactor.testing.node import NodeHandle
from xvactor.testing.procs import ServeProcess

pytestmark = pytest.mark.dcmtk


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_of(pki: Pki, **extra: object) -> dict[str, object]:
    return {
        "cert": str(pki.server_cert),
        "key": str(pki.server_key),
        "ca": str(pki.ca_cert),
    } | extra


def echo(port: int, *tls_options: str) -> tuple[int, str]:
    result = run_tool("echoscu", *tls_options, "-aec", "XVACTOR", "127.0.0.1", str(port))
    return result.returncode, result.stdout + result.stderr


def with_cert(pki: Pki, *, rogue: bool = False) -> tuple[str, ...]:
    key, cert = (
        (pki.rogue_client_key, pki.rogue_client_cert)
        if rogue
        else (pki.client_key, pki.client_cert)
    )
    return ("+tls", str(key), str(cert), "-pw", "+cf", str(pki.ca_cert))


def without_cert(pki: Pki) -> tuple[str, ...]:
    return ("+tla", "+cf", str(pki.ca_cert))


@pytest.fixture
def two_listeners(make_node: Any, pki: Pki) -> tuple[NodeHandle, int, int]:
    plain, secure = free_port(), free_port()
    handle = make_node(
        listeners=[
            {"host": "127.0.0.1", "port": plain},
            {"host": "127.0.0.1", "port": secure, "tls": tls_of(pki)},
        ]
    )
    return handle, plain, secure


def test_plain_and_tls_listeners_in_one_node(
    two_listeners: tuple[NodeHandle, int, int], pki: Pki
) -> None:
    _, plain, secure = two_listeners
    assert echo(plain)[0] == 0
    assert echo(secure, *with_cert(pki))[0] == 0
    assert echo(secure, *without_cert(pki))[0] == 0  # no client certificate required here


def test_plain_peer_on_tls_listener_fails_cleanly_and_listener_goes_on(
    two_listeners: tuple[NodeHandle, int, int], pki: Pki
) -> None:
    _, _, secure = two_listeners
    code, _ = echo(secure)
    assert code != 0
    assert echo(secure, *with_cert(pki))[0] == 0


def test_silent_peer_does_not_stop_the_tls_listener(
    two_listeners: tuple[NodeHandle, int, int], pki: Pki
) -> None:
    _, _, secure = two_listeners
    with socket.create_connection(("127.0.0.1", secure)):  # never says ClientHello
        assert echo(secure, *with_cert(pki))[0] == 0


def test_client_certificate_required(make_node: Any, pki: Pki) -> None:
    port = free_port()
    make_node(
        listeners=[
            {"host": "127.0.0.1", "port": port, "tls": tls_of(pki, require_client_cert=True)}
        ]
    )
    assert echo(port, *without_cert(pki))[0] != 0
    assert echo(port, *with_cert(pki, rogue=True))[0] != 0
    assert echo(port, *with_cert(pki))[0] == 0


def test_storescu_over_tls(
    two_listeners: tuple[NodeHandle, int, int], pki: Pki, tmp_path: Path
) -> None:
    handle, _, secure = two_listeners
    ds = make_dataset()
    source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "tls.dcm")
    result = run_tool(
        "storescu", *with_cert(pki), "-aec", "XVACTOR", "127.0.0.1", str(secure), str(source)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_path(handle, ds).is_file()


def test_tls_with_receive_workers(tmp_path: Path, pki: Pki) -> None:
    tls = tls_of(pki)
    config = (
        f'[[listeners]]\nhost = "127.0.0.1"\nport = 0\n'
        f'tls = {{ cert = "{tls["cert"]}", key = "{tls["key"]}", ca = "{tls["ca"]}" }}\n'
    )
    with ServeProcess(tmp_path / "data", ae_title="XVACTOR", config=config) as node:
        assert echo(node.port, *with_cert(pki))[0] == 0
        assert echo(node.port)[0] != 0
        assert echo(node.port, *with_cert(pki))[0] == 0


def test_unusable_certificate_is_a_one_line_start_error(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[[listeners]]\nhost = "127.0.0.1"\nport = 0\n'
        f'tls = {{ cert = "{tmp_path / "missing.crt"}", key = "{pki.server_key}" }}\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "xvactor", "serve", "--config", str(config),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "missing.crt" in lines[0]
    assert "not found" in lines[0]
