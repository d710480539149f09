"""Looking at a node's processes from a test: its receive workers and their memory."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["children", "peak_rss_mb", "process_tree", "wait_for_children"]


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


def peak_rss_mb(pid: int) -> dict[int, float]:
    """Peak resident memory (VmHWM, MB) of each process in ``pid``'s tree."""
    peaks: dict[int, float] = {}
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[member] = int(line.split()[1]) / 1024
    return peaks
