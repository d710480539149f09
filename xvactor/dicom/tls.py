"""TLS contexts for DICOM connections, built from :class:`xvactor.config.Tls`.

DICOM over TLS is specified by the Secure Transport Connection Profiles of PS3.15 Annex B;
the current ones, the BCP 195 TLS Profile (PS3.15 Section B.9) and the Non-Downgrading
BCP 195 TLS Profile (PS3.15 Section B.10), ask for TLS 1.2 or later, no SSL 3.0, TLS 1.0 or
1.1, and the cipher suites BCP 195 (RFC 9325) recommends. The contexts built here follow
them in spirit: the lowest version is TLS 1.2 (or 1.3 if configured), never lower, and the
cipher suites are Python's secure defaults (forward-secret AEAD suites only, no RC4, 3DES,
SHA-1 MACs, export or anonymous suites); compression and renegotiation stay off.

Every problem with the configured files (missing, unreadable, not PEM, an encrypted key, a
key that does not belong to the certificate) raises :class:`TlsConfigError` with a one-line
message naming the file, which the node prints before exiting with a non-zero status.
"""

from __future__ import annotations

import ssl

from xvactor.config import Tls

__all__ = ["TlsConfigError", "client_context", "server_context"]

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(ValueError):
    """A TLS configuration that cannot be used; the message is one line, ready for the user.

    Parameters
    ----------
    message : str
        What is wrong, naming the file concerned; line breaks are escaped.
    path : str, optional
        The file concerned, if any.

    Attributes
    ----------
    path : str or None
        The file concerned, if any.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
        self.path = path


class _EncryptedKeyError(Exception):
    """The private key asked for a passphrase, which the configuration cannot give."""


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and block start-up.
    raise _EncryptedKeyError


def _fail(what: str, path: str, problem: str) -> TlsConfigError:
    return TlsConfigError(f"TLS {what} {path}: {problem}", path=path)


def _check_readable(what: str, path: str) -> None:
    """Raise :class:`TlsConfigError` unless `path` names a readable file."""
    if not path:
        raise TlsConfigError(f"TLS {what}: no file configured")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except FileNotFoundError:
        raise _fail(what, path, "file not found") from None
    except IsADirectoryError:
        raise _fail(what, path, "is a directory, not a file") from None
    except PermissionError:
        raise _fail(what, path, "permission denied") from None
    except OSError as exc:
        raise _fail(what, path, f"cannot read ({exc.strerror or exc})") from None


def _detail(exc: ssl.SSLError) -> str:
    # OpenSSL's reason code, e.g. NO_CERTIFICATE_OR_CRL_FOUND; "PEM lib" errors carry none.
    return f" ({exc.reason.replace('_', ' ').lower()})" if exc.reason else ""


def _min_version(tls: Tls) -> ssl.TLSVersion:
    try:
        return _VERSIONS[tls.min_version]
    except KeyError:
        msg = f'TLS min_version {tls.min_version!r}: must be "1.2" or "1.3"'
        raise TlsConfigError(msg) from None


def _harden(context: ssl.SSLContext, tls: Tls | None) -> ssl.SSLContext:
    # Python's defaults already exclude SSL 3.0, TLS 1.0/1.1 and weak suites; setting the
    # floor explicitly keeps it there whatever the interpreter's or OpenSSL's defaults.
    context.minimum_version = ssl.TLSVersion.TLSv1_2 if tls is None else _min_version(tls)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    """Load our certificate (chain) and private key into `context`, mapping every error."""
    _check_readable("certificate", cert)
    _check_readable("private key", key)
    # Parse the certificate file alone first, so a later failure is known to be the key's.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
    except ssl.SSLError as exc:
        raise _fail("certificate", cert, f"no valid PEM certificate{_detail(exc)}") from None
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _EncryptedKeyError:
        problem = "is encrypted; a passphrase cannot be configured, use an unencrypted key"
        raise _fail("private key", key, problem) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise _fail("private key", key, f"does not match certificate {cert}") from None
        problem = f"not a readable PEM private key{_detail(exc)}"
        raise _fail("private key", key, problem) from None
    except OSError as exc:
        raise _fail("private key", key, f"cannot load ({exc.strerror or exc})") from None


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    """Trust the CA certificates in the PEM bundle `ca`, mapping every error."""
    _check_readable("CA file", ca)
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise _fail("CA file", ca, f"no valid PEM certificate{_detail(exc)}") from None
    except OSError as exc:
        raise _fail("CA file", ca, f"cannot load ({exc.strerror or exc})") from None


def server_context(tls: Tls) -> ssl.SSLContext:
    """Return the TLS context a listener wraps accepted connections with.

    The peer's certificate is checked against `tls.ca`: it is required when
    `tls.require_client_cert` is set, verified if presented when only `tls.ca` is set, and
    not asked for otherwise (PS3.15 Section B.9 leaves peer authentication to the site).

    Parameters
    ----------
    tls : xvactor.config.Tls
        The listener's TLS settings: `cert` and `key` are required.

    Returns
    -------
    ssl.SSLContext
        A ``PROTOCOL_TLS_SERVER`` context, for pynetdicom's ``AE.start_server(...,
        ssl_context=...)``.

    Raises
    ------
    TlsConfigError
        If a file is missing, unreadable or unusable, or the settings contradict each
        other; the message is one line naming the file.
    """
    if tls.require_client_cert and not tls.ca:
        raise TlsConfigError("TLS require_client_cert: needs a ca to verify clients with")
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls)
    _load_chain(context, tls.cert, tls.key)
    if tls.ca:
        _load_ca(context, tls.ca)
    if tls.require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    elif tls.ca:
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_context(tls: Tls | None, *, verify_host: str | None = None) -> ssl.SSLContext:
    """Return the TLS context to open an association to a remote AE with.

    With `tls.ca` the peer must present a certificate issued by one of those CAs.
    Its host name is checked only when `verify_host` is given: DICOM peers are usually
    configured by IP address and their certificates seldom carry that address as a
    subjectAltName, so the chain to a site CA is what authenticates them by default.
    Without a CA the connection is encrypted but the peer is not authenticated (like
    DCMTK's ``--ignore-peer-cert``).

    Parameters
    ----------
    tls : xvactor.config.Tls or None
        The destination's TLS settings. `cert` and `key`, if set, are presented as our
        client certificate; `require_client_cert` does not apply. ``None`` gives TLS 1.2 or
        later, no client certificate and no peer verification.
    verify_host : str, optional
        Check that the peer's certificate names this host (DNS name or IP address); pass
        the same value as pynetdicom's ``server_hostname``, i.e. ``AE.associate(...,
        tls_args=(context, verify_host))``. Needs `tls.ca`.

    Returns
    -------
    ssl.SSLContext
        A ``PROTOCOL_TLS_CLIENT`` context.

    Raises
    ------
    TlsConfigError
        If a file is missing, unreadable or unusable, or `verify_host` is given without a
        CA; the message is one line naming the file.
    """
    ca = tls.ca if tls is not None else ""
    if verify_host is not None and not ca:
        raise TlsConfigError(f"TLS verify_host {verify_host!r}: needs a ca to verify with")
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), tls)
    if tls is not None and (tls.cert or tls.key):
        _load_chain(context, tls.cert, tls.key)
    if ca:
        _load_ca(context, ca)
        context.check_hostname = verify_host is not None
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
