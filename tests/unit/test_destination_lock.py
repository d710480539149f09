"""The per-destination lock holds across processes (one association at a time, node-wide)."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

from xvactor.dicom.scu import DestinationLock, Peer

_HOLDER = """
import sys, time
from pathlib import Path
from xvactor.dicom.scu import DestinationLock, Peer
lock = DestinationLock(Path(sys.argv[1]), Peer(host="127.0.0.1", port=104, called_ae_title="PACS"))
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


def _holder(directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _say(process: subprocess.Popen[str], text: str) -> None:
    assert process.stdin is not None
    process.stdin.write(text)
    process.stdin.flush()


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


def test_a_second_process_waits_until_the_first_releases(tmp_path: Path) -> None:
    with _holder(tmp_path) as first:
        try:
            assert _line(first) == "held\n"
            with _holder(tmp_path) as second:
                try:
                    # Had the lock been free, "held" would be readable within this time.
                    assert second.stdout is not None
                    readable, _, _ = select.select([second.stdout], [], [], 1.0)
                    assert readable == []
                    _say(first, "\n")
                    assert first.wait(timeout=10) == 0
                    assert _line(second) == "held\n"
                    _say(second, "\n")
                    assert second.wait(timeout=10) == 0
                finally:
                    if second.poll() is None:
                        second.kill()
        finally:
            if first.poll() is None:
                first.kill()


def test_locks_are_per_destination_and_idempotent(tmp_path: Path) -> None:
    pacs = DestinationLock(tmp_path, Peer(host="127.0.0.1", port=104, called_ae_title="PACS"))
    other = DestinationLock(tmp_path, Peer(host="127.0.0.1", port=105, called_ae_title="X"))
    pacs.acquire()
    other.acquire()  # would block forever if both shared one lock
    other.release()
    other.release()
    pacs.release()
