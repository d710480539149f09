"""Run the DCMTK command-line tools from tests: locate them, run them, host a ``storescp``.

DCMTK's tools (``echoscu``, ``storescu``, ``storescp``, ``dcmdump``, ``dcmcjpeg``, ...) are
the peers our users' equipment behaves like, so integration tests talk to them. A missing
tool is an error, never a skip: :func:`require_tool` raises and the test fails.

Two pitfalls are handled here once:

* pynetdicom installs Python console scripts with DCMTK's names (``storescp``, ``echoscu``,
  ``findscu``, ...). They may come first on ``PATH`` (e.g. pyenv shims) but take other
  options, so :func:`require_tool` prefers native executables and otherwise accepts a
  candidate only if its ``--version`` output names DCMTK.
* Debian's DCMTK leaves Nagle's algorithm on unless ``TCP_NODELAY=1`` is in the
  environment, so small PDUs wait for delayed ACKs. :func:`dcmtk_env` always sets it.

Set ``XVACTOR_DCMTK_BIN`` to a directory to use the tools there and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from xvactor.testing.net import LOOPBACK, free_port, wait_for_port

__all__ = ["DCMTK_BIN_ENV", "DcmtkError", "StoreSCP", "dcmtk_env", "require_tool", "run_tool"]

#: Environment variable naming the one directory to take DCMTK tools from.
DCMTK_BIN_ENV = "XVACTOR_DCMTK_BIN"

# Leading bytes of native executables: ELF, Mach-O (32/64 bit, fat), PE.
_NATIVE_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ")
_FALLBACK_DIRS = ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")
_STARTUP_ATTEMPTS = 3

_found: dict[str, str] = {}


class DcmtkError(RuntimeError):
    """A DCMTK tool exited with a non-zero status.

    Attributes
    ----------
    result : subprocess.CompletedProcess[str]
        The finished process, with its captured output.
    """

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        command = " ".join(str(arg) for arg in result.args)
        output = (result.stderr or result.stdout).strip()
        super().__init__(f"{command!r} exited with status {result.returncode}: {output}")


def _candidates(name: str) -> list[str]:
    override = os.environ.get(DCMTK_BIN_ENV)
    if override:
        directories: list[str] = [override]
    else:
        path = os.environ.get("PATH", os.defpath).split(os.pathsep)
        directories = [*path, *_FALLBACK_DIRS]
    seen: set[str] = set()
    found: list[str] = []
    for directory in directories:
        hit = shutil.which(name, path=directory) if directory else None
        if hit is None:
            continue
        absolute = os.path.abspath(hit)
        key = os.path.realpath(absolute)
        if key not in seen:
            seen.add(key)
            found.append(absolute)
    return found


def _is_native(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith(_NATIVE_MAGIC)


def _reports_dcmtk(path: str) -> bool:
    try:
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "dcmtk" in (result.stdout + result.stderr).lower()


def require_tool(name: str) -> str:
    """Return the absolute path of the DCMTK tool `name`, or fail.

    Native executables on ``PATH`` (then ``/usr/bin``, ``/usr/local/bin``,
    ``/opt/homebrew/bin``) are preferred, in order; scripts are accepted only when their
    ``--version`` output names DCMTK, so pynetdicom's same-named apps are passed over.
    The answer is cached per process.

    Parameters
    ----------
    name : str
        The tool's name, e.g. ``"storescu"``.

    Returns
    -------
    str
        The absolute path of the executable.

    Raises
    ------
    RuntimeError
        If no DCMTK tool of that name is installed. Tests must fail on this, not skip.
    """
    cached = _found.get(name)
    if cached is not None:
        return cached
    candidates = _candidates(name)
    native = [path for path in candidates if _is_native(path)]
    chosen = native[0] if native else next(filter(_reports_dcmtk, candidates), None)
    if chosen is None:
        msg = f"DCMTK tool {name!r} not found: install Debian package dcmtk"
        if candidates:
            msg += f" (ignored non-DCMTK {', '.join(candidates)})"
        raise RuntimeError(msg)
    _found[name] = chosen
    return chosen


def dcmtk_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment to run a DCMTK tool with.

    Parameters
    ----------
    env : mapping, optional
        Variables to set on top of :data:`os.environ`.

    Returns
    -------
    dict of str to str
        A copy of :data:`os.environ`, updated with `env`, and always ``TCP_NODELAY=1``.
    """
    merged = dict(os.environ)
    if env is not None:
        merged.update(env)
    merged["TCP_NODELAY"] = "1"
    return merged


def run_tool(
    name: str,
    *args: str | os.PathLike[str],
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool to completion and capture its output.

    Parameters
    ----------
    name : str
        The tool, located with :func:`require_tool`.
    *args : str or path-like
        Its command-line arguments.
    timeout : float, optional
        Seconds before the tool is killed and :class:`subprocess.TimeoutExpired` raised.
    env : mapping, optional
        Extra environment variables, see :func:`dcmtk_env`.
    check : bool, optional
        Raise :class:`DcmtkError` if the tool exits with a non-zero status.

    Returns
    -------
    subprocess.CompletedProcess[str]
        The result; stdout and stderr are decoded as UTF-8, undecodable bytes (e.g. Latin-1
        names printed by ``dcmdump``) kept as backslash escapes.
    """
    command = [require_tool(name), *(os.fspath(arg) for arg in args)]
    result = subprocess.run(
        command,
        capture_output=True,
        encoding="utf-8",
        errors="backslashreplace",
        timeout=timeout,
        env=dcmtk_env(env),
        check=False,
    )
    if check and result.returncode != 0:
        raise DcmtkError(result)
    return result


class StoreSCP:
    """DCMTK ``storescp`` running in the background, writing what it receives to a directory.

    It accepts every transfer syntax DCMTK knows (``+xa``) and writes files bit-preserving
    (``+B``), so a received file has exactly the encoding the sender used. DCMTK 3.6.7's
    ``storescp`` cannot bind one address: it listens on all interfaces; clients use
    :attr:`host` (127.0.0.1). Start-up waits until the port accepts a connection (so a port
    some other program listens on would pass for ready: leave `port` unset); exit
    terminates the process group (so ``--fork`` children too) and kills it after
    `shutdown_timeout` seconds.

    Parameters
    ----------
    directory : str or path-like
        Where received files are written; created if missing.
    ae_title : str, optional
        The AE title it answers to, default ``"STORESCP"``.
    fork : bool, optional
        Handle each association in a child process (``--fork``).
    port : int, optional
        A fixed port; by default a free one is chosen (and re-chosen if taken meanwhile).
    extra_args : sequence of str, optional
        More ``storescp`` options, e.g. ``("-pm",)`` for promiscuous mode.
    startup_timeout, shutdown_timeout : float, optional
        Seconds to wait for readiness and for termination.
    env : mapping, optional
        Extra environment variables, see :func:`dcmtk_env`.

    Examples
    --------
    >>> with StoreSCP(tmp_path, ae_title="ARCHIVE") as scp:  # doctest: +SKIP
    ...     run_tool("echoscu", "-aec", scp.ae_title, scp.host, str(scp.port), check=True)
    """

    host = LOOPBACK

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        ae_title: str = "STORESCP",
        fork: bool = False,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.ae_title = ae_title
        self.fork = fork
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self._env = env
        self._fixed_port = port
        self._port: int | None = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._output = ""

    @property
    def port(self) -> int:
        """int: The TCP port it listens on (known once started, or if fixed)."""
        if self._port is None:
            msg = "StoreSCP has not been started"
            raise RuntimeError(msg)
        return self._port

    @property
    def running(self) -> bool:
        """bool: Whether the ``storescp`` process is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self, port: int) -> list[str]:
        """Return the ``storescp`` command line for `port`."""
        args = [require_tool("storescp"), "+B", "+xa", "-aet", self.ae_title]
        args += ["-od", os.fspath(self.directory)]
        if self.fork:
            args.append("--fork")
        return [*args, *self.extra_args, str(port)]

    def output(self) -> str:
        """Return what ``storescp`` has printed so far (stdout and stderr)."""
        if self._log is None:
            return self._output
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="backslashreplace")

    def received(self) -> list[Path]:
        """Return the files in :attr:`directory`, sorted by name."""
        return sorted(path for path in self.directory.iterdir() if path.is_file())

    def start(self) -> None:
        """Start ``storescp`` and return once its port accepts connections.

        Raises
        ------
        RuntimeError
            If it is already running, or exits during start-up (its output is included).
        TimeoutError
            If its port does not accept a connection within `startup_timeout` seconds.
        """
        if self._process is not None:
            msg = "StoreSCP is already started"
            raise RuntimeError(msg)
        self.directory.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port is not None else _STARTUP_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._fixed_port if self._fixed_port is not None else free_port()
            try:
                self._launch(port)
                return
            except _ExitedEarlyError as exc:
                self._reap()
                if "already in use" not in str(exc) or attempt == attempts:
                    raise RuntimeError(str(exc)) from None
            except BaseException:
                self.stop()
                raise

    def _launch(self, port: int) -> None:
        # The log outlives this call: it is closed in stop(), after the process is reaped.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._port = port
        self._process = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dcmtk_env(self._env),
            start_new_session=True,
        )
        wait_for_port(self.host, port, self.startup_timeout, check=self._check_alive)
        self._check_alive()

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            status = self._process.returncode
            output = self.output().strip()
            raise _ExitedEarlyError(f"storescp exited with status {status}: {output}")

    def stop(self) -> None:
        """Terminate ``storescp`` and its children; kill them if they outstay the timeout.

        Safe to call more than once, and on an instance that never started.
        """
        process = self._process
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.shutdown_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        process = self._process
        if process is not None:
            process.wait()
            # Sweep --fork children still running after their parent went.
            _signal_group(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._output = self.output()
            self._log.close()
            self._log = None
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "?"
        state = "running" if self.running else "stopped"
        return f"<StoreSCP {self.ae_title}@{self.host}:{port} -> {self.directory} ({state})>"


class _ExitedEarlyError(RuntimeError):
    """``storescp`` ended before its port accepted a connection."""


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
