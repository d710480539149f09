"""TLS contexts (PS3.15 Annex B.9/B.10) and the throw-away PKI, checked by real handshakes.

The PKI is made once per module by :func:`xvactor.testing.certs.make_pki`; nothing secret is
committed. Handshakes run over a socket pair, the server side in a thread; DCMTK checks
that it accepts the generated files and interoperates with our contexts.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from xvactor.config import Tls
from xvactor.dicom.tls import TlsConfigError, client_context, server_context
from xvactor.testing.certs import Pki, make_pki
from xvactor.testing.dcmtk import StoreSCP, run_tool
from xvactor.testing.net import LOOPBACK

_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(pki: Pki, **kwargs: Any) -> Tls:
    return Tls(cert=str(pki.server_cert), key=str(pki.server_key), **kwargs)


def _client(cert: Path, key: Path, **kwargs: Any) -> Tls:
    return Tls(cert=str(cert), key=str(key), **kwargs)


@dataclass
class Outcome:
    """What each side of one handshake saw."""

    server_error: BaseException | None = None
    client_error: BaseException | None = None
    version: str | None = None
    peer_subject: str | None = None

    @property
    def accepted(self) -> bool:
        return self.server_error is None and self.client_error is None


def _common_name(cert: Any) -> str | None:
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str = "localhost"
) -> Outcome:
    """Handshake over a socket pair; the server then sends one byte the client must read.

    In TLS 1.3 the client finishes its handshake before the server has checked the client
    certificate, so only that byte (or the alert in its place) tells acceptance apart.
    """
    outcome = Outcome()
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(_TIMEOUT)
    client_sock.settimeout(_TIMEOUT)

    def serve() -> None:
        try:
            with server.wrap_socket(server_sock, server_side=True) as tls:
                outcome.peer_subject = _common_name(tls.getpeercert())
                tls.sendall(b"!")
        except (OSError, ValueError) as exc:
            outcome.server_error = exc
        finally:
            server_sock.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(client_sock, server_hostname=server_hostname) as tls:
            outcome.version = tls.version()
            if tls.recv(1) != b"!":
                outcome.client_error = ConnectionError("closed by the server")
    except (OSError, ValueError) as exc:
        outcome.client_error = exc
    finally:
        client_sock.close()
        thread.join(_TIMEOUT)
    assert not thread.is_alive()
    return outcome


# --- the generated PKI ----------------------------------------------------------------------


def test_pki_files_verify_with_openssl(pki: Pki) -> None:
    for cert in (pki.server_cert, pki.client_cert):
        result = subprocess.run(
            ["openssl", "verify", "-CAfile", pki.ca_cert, cert],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    rogue = subprocess.run(
        ["openssl", "verify", "-CAfile", pki.ca_cert, pki.rogue_client_cert],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rogue.returncode != 0


@pytest.mark.dcmtk
def test_pki_files_are_accepted_by_dcmtk(pki: Pki) -> None:
    # Offline check (`+vc`): DCMTK loads key and certificate, matches them, and verifies
    # the certificate against the CA, without a network peer.
    for cert, key in ((pki.server_cert, pki.server_key), (pki.client_cert, pki.client_key)):
        result = run_tool("echoscu", "+tls", key, cert, "+cf", pki.ca_cert, "+vc", cert)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "passed" in result.stdout
    rogue = run_tool(
        "echoscu",
        *("+tls", pki.rogue_client_key, pki.rogue_client_cert),
        *("+cf", pki.ca_cert, "+vc", pki.rogue_client_cert),
    )
    assert rogue.returncode != 0
    mismatch = run_tool("echoscu", "+tls", pki.client_key, pki.server_cert, "+vc", pki.server_cert)
    assert mismatch.returncode != 0
    assert "do not match" in mismatch.stdout + mismatch.stderr


def test_pki_keys_are_unencrypted_and_private(pki: Pki) -> None:
    for key in (pki.ca_key, pki.server_key, pki.client_key, pki.rogue_client_key):
        assert "ENCRYPTED" not in key.read_text()
        assert key.stat().st_mode & 0o077 == 0


# --- server_context -------------------------------------------------------------------------


def test_contexts_never_go_below_tls_1_2(pki: Pki) -> None:
    assert server_context(_server(pki)).minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_context(None).minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_context(_server(pki, min_version="1.3")).minimum_version == (
        ssl.TLSVersion.TLSv1_3
    )


@pytest.mark.parametrize(
    ("ca", "require", "mode"),
    [
        (False, False, ssl.CERT_NONE),
        (True, False, ssl.CERT_OPTIONAL),
        (True, True, ssl.CERT_REQUIRED),
    ],
)
def test_server_verify_mode(pki: Pki, ca: bool, require: bool, mode: ssl.VerifyMode) -> None:
    tls = _server(pki, ca=str(pki.ca_cert) if ca else "", require_client_cert=require)
    assert server_context(tls).verify_mode == mode


def test_server_accepts_a_client_without_certificate(pki: Pki) -> None:
    outcome = handshake(server_context(_server(pki)), client_context(None))
    assert outcome.accepted, outcome
    assert outcome.version == "TLSv1.3"
    assert outcome.peer_subject is None


def test_required_client_certificate(pki: Pki) -> None:
    server = server_context(_server(pki, ca=str(pki.ca_cert), require_client_cert=True))

    anonymous = handshake(server, client_context(None))
    assert not anonymous.accepted
    assert isinstance(anonymous.server_error, ssl.SSLError)

    rogue = handshake(server, client_context(_client(pki.rogue_client_cert, pki.rogue_client_key)))
    assert not rogue.accepted
    assert isinstance(rogue.server_error, ssl.SSLCertVerificationError)

    trusted = handshake(server, client_context(_client(pki.client_cert, pki.client_key)))
    assert trusted.accepted, trusted
    assert trusted.peer_subject == "xvactor-client"


def test_optional_client_certificate_is_verified_when_presented(pki: Pki) -> None:
    server = server_context(_server(pki, ca=str(pki.ca_cert)))
    assert handshake(server, client_context(None)).accepted
    rogue = handshake(server, client_context(_client(pki.rogue_client_cert, pki.rogue_client_key)))
    assert isinstance(rogue.server_error, ssl.SSLCertVerificationError)


def test_min_version_1_3_refuses_a_tls_1_2_client(pki: Pki) -> None:
    server = server_context(_server(pki, min_version="1.3"))
    capped = client_context(None)
    capped.maximum_version = ssl.TLSVersion.TLSv1_2
    outcome = handshake(server, capped)
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert isinstance(outcome.client_error, ssl.SSLError)

    # The same client is fine with a 1.2 server: the refusal is the version floor's doing.
    tls_1_2 = handshake(server_context(_server(pki)), capped)
    assert tls_1_2.accepted, tls_1_2
    assert tls_1_2.version == "TLSv1.2"


# --- client_context -------------------------------------------------------------------------


def test_client_verifies_the_server_against_its_ca(pki: Pki) -> None:
    trusting = client_context(_client(pki.client_cert, pki.client_key, ca=str(pki.ca_cert)))
    assert trusting.verify_mode == ssl.CERT_REQUIRED
    assert not trusting.check_hostname
    assert handshake(server_context(_server(pki)), trusting).accepted

    # A server certificate from another CA is refused.
    impostor = server_context(_client(pki.rogue_client_cert, pki.rogue_client_key))
    outcome = handshake(impostor, trusting)
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


def test_client_without_ca_encrypts_but_does_not_authenticate(pki: Pki) -> None:
    context = client_context(None)
    assert context.verify_mode == ssl.CERT_NONE
    impostor = server_context(_client(pki.rogue_client_cert, pki.rogue_client_key))
    assert handshake(impostor, context).accepted


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_client_checks_the_host_name_only_when_asked(pki: Pki, host: str) -> None:
    tls = _client(pki.client_cert, pki.client_key, ca=str(pki.ca_cert))
    server = server_context(_server(pki))
    checking = client_context(tls, verify_host=host)
    assert checking.check_hostname
    assert handshake(server, checking, server_hostname=host).accepted
    wrong = handshake(server, checking, server_hostname="pacs.example.org")
    assert isinstance(wrong.client_error, ssl.SSLCertVerificationError)
    # Without verify_host the name is not checked: the CA chain alone authenticates.
    unchecked = client_context(tls)
    assert handshake(server, unchecked, server_hostname="pacs.example.org").accepted


# --- configuration errors -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bad")
    garbage = directory / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    encrypted = directory / "encrypted.key"
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            pki.server_key,
            "-out",
            encrypted,
            "-aes256",
            "-passout",
            "pass:secret",
        ],
        check=True,
        capture_output=True,
    )
    return {"missing": directory / "missing.pem", "garbage": garbage, "encrypted": encrypted}


def _case(pki: Pki, bad: dict[str, Path], case: str) -> tuple[Tls, Path, str, str]:
    cert, key, ca = pki.server_cert, pki.server_key, pki.ca_cert
    cases = {
        "missing cert": (bad["missing"], key, ca, bad["missing"], "certificate", "not found"),
        "cert is a directory": (bad["missing"].parent, key, ca, bad["missing"].parent,
                                "certificate", "directory"),
        "garbage cert": (bad["garbage"], key, ca, bad["garbage"], "certificate", "no valid PEM"),
        "key as cert": (key, key, ca, key, "certificate", "no valid PEM"),
        "missing key": (cert, bad["missing"], ca, bad["missing"], "private key", "not found"),
        "garbage key": (cert, bad["garbage"], ca, bad["garbage"], "private key", "PEM private"),
        "encrypted key": (cert, bad["encrypted"], ca, bad["encrypted"], "private key",
                          "encrypted"),
        "mismatched key": (cert, pki.client_key, ca, pki.client_key, "private key",
                           f"does not match certificate {cert}"),
        "missing CA": (cert, key, bad["missing"], bad["missing"], "CA file", "not found"),
        "garbage CA": (cert, key, bad["garbage"], bad["garbage"], "CA file", "no valid PEM"),
    }  # fmt: skip
    cert, key, ca, culprit, what, problem = cases[case]
    tls = Tls(cert=str(cert), key=str(key), ca=str(ca))
    return tls, culprit, f"TLS {what} {culprit}: ", problem


_CASES = [
    "missing cert",
    "cert is a directory",
    "garbage cert",
    "key as cert",
    "missing key",
    "garbage key",
    "encrypted key",
    "mismatched key",
    "missing CA",
    "garbage CA",
]


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("case", _CASES)
def test_config_errors_are_one_line_naming_the_file(
    pki: Pki, bad_files: dict[str, Path], case: str, side: str
) -> None:
    tls, culprit, prefix, problem = _case(pki, bad_files, case)
    with pytest.raises(TlsConfigError) as info:
        server_context(tls) if side == "server" else client_context(tls)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(prefix), message
    assert problem in message
    assert info.value.path == str(culprit)
    assert info.value.__cause__ is None


def test_contradictory_settings_are_config_errors(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="require_client_cert: needs a ca"):
        server_context(_server(pki, require_client_cert=True))
    with pytest.raises(TlsConfigError, match=r"min_version '1\.1'"):
        server_context(_server(pki, min_version="1.1"))
    with pytest.raises(TlsConfigError, match="verify_host 'localhost': needs a ca"):
        client_context(None, verify_host="localhost")
    assert issubclass(TlsConfigError, ValueError)


# --- interoperability with DCMTK ------------------------------------------------------------


@pytest.mark.dcmtk
def test_dcmtk_echoscu_completes_a_handshake_with_server_context(pki: Pki) -> None:
    # No DICOM server here: the handshake and the first PDU byte (0x01, A-ASSOCIATE-RQ)
    # show DCMTK's default BCP 195 profile accepts our context and our certificate.
    server = server_context(_server(pki, ca=str(pki.ca_cert), require_client_cert=True))
    seen: dict[str, object] = {}
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.settimeout(_TIMEOUT)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with server.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(_TIMEOUT)
                    seen["version"] = tls.version()
                    seen["peer"] = _common_name(tls.getpeercert())
                    seen["first"] = tls.recv(1)
            except (OSError, ValueError) as exc:
                seen["error"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            run_tool(
                "echoscu",
                *("-to", "5", "+tls", pki.client_key, pki.client_cert, "+cf", pki.ca_cert),
                *(LOOPBACK, str(port)),
                timeout=_TIMEOUT * 2,
            )
        finally:
            thread.join(_TIMEOUT)
    assert "error" not in seen, seen
    assert seen == {"version": "TLSv1.3", "peer": "xvactor-client", "first": b"\x01"}


@pytest.mark.dcmtk
def test_client_context_echoes_dcmtk_storescp_over_tls(pki: Pki, tmp_path: Path) -> None:
    tls_args = ("+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca_cert))
    tls = _client(pki.client_cert, pki.client_key, ca=str(pki.ca_cert))
    ae = AE(ae_title="XVTEST")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = _TIMEOUT
    with StoreSCP(tmp_path, ae_title="TLSSCP", extra_args=tls_args) as scp:
        context = client_context(tls, verify_host=LOOPBACK)
        assoc = ae.associate(
            LOOPBACK, scp.port, ae_title=scp.ae_title, tls_args=(context, LOOPBACK)
        )
        assert assoc.is_established, scp.output()
        try:
            assert assoc.dul.socket is not None
            assert isinstance(assoc.dul.socket.socket, ssl.SSLSocket)
            status = assoc.send_c_echo()
        finally:
            assoc.release()
    assert status.Status == 0x0000
