"""A node as a process, from a test: start it, look at its receive workers, stop it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from xvactor.testing.net import free_port, wait_for_port

__all__ = [
    "ServeProcess",
    "children",
    "connection_holder",
    "peak_rss_mb",
    "process_tree",
    "wait_for_children",
]


def children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return sorted(found)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    return [pid, *(member for child in children(pid) for member in process_tree(child))]


def wait_for_children(pid: int, count: int, timeout: float = 60.0) -> list[int]:
    """Wait until ``pid`` has exactly ``count`` children (a node starting its workers)."""
    deadline = time.monotonic() + timeout
    while len(found := children(pid)) != count:
        if time.monotonic() > deadline:
            msg = f"process {pid} has {len(found)} children, not {count}, after {timeout} s"
            raise TimeoutError(msg)
        time.sleep(0.02)
    return found


def connection_holder(pids: list[int], local_port: int, peer_port: int) -> int | None:
    """Which of ``pids`` holds the TCP connection from ``peer_port`` to ``local_port``."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == local_port and (
                int(remote.rsplit(":", 1)[1], 16) == peer_port
            ):
                inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().name == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue  # closed meanwhile
    return None


def peak_rss_mb(pid: int) -> dict[int, float]:
    """Peak resident memory (VmHWM, MB) of each process in ``pid``'s tree."""
    peaks: dict[int, float] = {}
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[member] = int(line.split()[1]) / 1024
    return peaks


class ServeProcess:
    """``xvactor serve`` as a user runs it: ready on entry, stopped (SIGTERM) on exit.

    Ready means the port accepts connections and the receive workers run.  ``stop()``
    returns the node's stderr (its log) and leaves its exit status in ``returncode``.
    """

    def __init__(
        self, data_dir: Path, *, ae_title: str = "NODE", workers: int = 2, config: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.ae_title = ae_title
        self.workers = workers
        self.config = config
        """Extra top-level TOML for the node's configuration file."""
        self.port = free_port()
        self.returncode: int | None = None
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        """The node's process id."""
        return self.process.pid

    @property
    def process(self) -> subprocess.Popen[str]:
        """The running node."""
        if self._process is None:
            raise RuntimeError("not started")
        return self._process

    def __enter__(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir.parent / f"{self.data_dir.name}.toml"
        config.write_text(f"receive_processes = {self.workers}\n{self.config}\n")
        command = [
            sys.executable, "-m", "xvactor", "serve", "--config", str(config),
            "--port", str(self.port), "--aet", self.ae_title, "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=60, check=self._alive)
            wait_for_children(self.pid, self.workers)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"xvactor serve exited with status {self.process.returncode}")

    def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> str:
        """Signal the node, wait for it, return its stderr."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signum)
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        self.returncode = process.returncode
        return stderr

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self.returncode is None:
            self.stop()
