"""Loopback networking helpers for tests: free ports and readiness by connecting.

Integration tests run DICOM peers (DCMTK tools, an ``xvactor`` node) on 127.0.0.1. Two
things make those tests reliable:

* a port nobody else uses, chosen by the kernel (:func:`free_port`), and
* waiting until the peer *accepts a TCP connection* (:func:`wait_for_port`) instead of
  sleeping for a fixed time, which is both slower and flaky under load.

Examples
--------
>>> port = free_port()
>>> # start a server listening on port ...
>>> wait_for_port("127.0.0.1", port, timeout=5.0)  # doctest: +SKIP
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

__all__ = ["LOOPBACK", "free_port", "port_accepts", "wait_for_port", "wait_until_closed"]

#: The address every test peer binds to or connects to.
LOOPBACK = "127.0.0.1"

# Backoff between connection attempts: start short so a fast peer is seen at once,
# grow so a slow one is not hammered, cap so readiness is noticed promptly.
_FIRST_DELAY = 0.005
_MAX_DELAY = 0.1
_CONNECT_TIMEOUT = 0.5


def _attempts(timeout: float) -> Iterator[float]:
    """Yield the time left before each attempt, sleeping with backoff in between.

    The first attempt is immediate; the generator ends once ``timeout`` has passed.
    """
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY
    while True:
        yield max(0.0, deadline - time.monotonic())
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_DELAY)


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` that is free right now.

    The kernel picks the port: a socket is bound to ``(host, 0)``, its port read back and the
    socket closed. Another process could take the port before the caller binds it; callers
    that start an external server should be ready to retry with a new port if the bind fails
    (:class:`xvactor.testing.dcmtk.StoreSCP` does).

    Parameters
    ----------
    host : str, optional
        The address to bind, default ``"127.0.0.1"``.

    Returns
    -------
    int
        A port number in the ephemeral range.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = _CONNECT_TIMEOUT) -> bool:
    """Return whether a TCP connection to ``(host, port)`` is accepted now.

    The connection is closed straight away without sending anything. DICOM peers treat that
    as an aborted association attempt and keep listening.

    Parameters
    ----------
    host : str
        The address to connect to.
    port : int
        The TCP port.
    timeout : float, optional
        Seconds to wait for the connection to be accepted.

    Returns
    -------
    bool
        ``True`` if the connection was accepted, ``False`` if it was refused or timed out.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 10.0,
    *,
    check: Callable[[], None] | None = None,
) -> None:
    """Block until ``(host, port)`` accepts a TCP connection.

    Connection attempts are retried with a short, growing backoff (5 ms up to 100 ms) until
    one is accepted or `timeout` seconds have passed.

    Parameters
    ----------
    host : str
        The address to connect to.
    port : int
        The TCP port.
    timeout : float, optional
        Seconds to wait in total, default 10.
    check : callable, optional
        Called before every attempt; it may raise to stop waiting early, e.g. when the
        server process being waited for has already exited.

    Raises
    ------
    TimeoutError
        If no connection was accepted within `timeout` seconds.
    """
    attempts = 0
    for remaining in _attempts(timeout):
        if check is not None:
            check()
        attempts += 1
        if port_accepts(host, port, timeout=max(0.01, min(_CONNECT_TIMEOUT, remaining))):
            return
    msg = (
        f"nothing accepted a TCP connection on {host}:{port} within {timeout:g} s "
        f"({attempts} attempts)"
    )
    raise TimeoutError(msg)


def wait_until_closed(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``(host, port)`` no longer accepts TCP connections.

    The counterpart of :func:`wait_for_port` for shutdown tests: a stopped listener must
    release its port, and this checks it by connecting, not by sleeping.

    Parameters
    ----------
    host : str
        The address to connect to.
    port : int
        The TCP port.
    timeout : float, optional
        Seconds to wait in total, default 10.

    Raises
    ------
    TimeoutError
        If connections were still accepted after `timeout` seconds.
    """
    for _ in _attempts(timeout):
        if not port_accepts(host, port):
            return
    msg = f"{host}:{port} still accepts TCP connections after {timeout:g} s"
    raise TimeoutError(msg)
