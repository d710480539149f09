"""Directory fsyncs shared among threads: an entry is durable only after an fsync begun after it."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from xvactor.storage import dirsync
from xvactor.storage.dirsync import DirectorySync


class FakeFsync:
    """Records each fsync; ``hold`` makes the next ones wait until ``release``."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.began = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next: OSError | None = None

    def hold(self) -> None:
        self.gate.clear()
        self.began.clear()

    def release(self) -> None:
        self.gate.set()

    def __call__(self, directory: str) -> None:
        self.calls.append(directory)
        self.began.set()
        assert self.gate.wait(10), "an fsync was held for ever"
        failure, self.fail_next = self.fail_next, None
        if failure is not None:
            raise failure


def in_thread(call: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def until_waiting(syncs: DirectorySync, directory: str, count: int) -> None:
    """Until ``count`` threads are inside ``sync`` for ``directory`` (bounded)."""
    deadline = time.monotonic() + 10
    while syncs._directories[directory].waiting < count:
        assert time.monotonic() < deadline, "the thread never reached sync"
        time.sleep(0.001)


def test_an_entry_is_synced_once_and_a_later_entry_again() -> None:
    fsync = FakeFsync()
    syncs = DirectorySync(fsync)
    first = syncs.entered()
    syncs.sync("/d", first)
    syncs.sync("/d", first)  # already durable: no second fsync
    assert fsync.calls == ["/d"]
    later = syncs.entered()
    syncs.sync("/d", later)
    assert fsync.calls == ["/d", "/d"]


def sync_while_one_runs(
    syncs: DirectorySync, fsync: FakeFsync, first: int, second: Callable[[], int]
) -> tuple[list[BaseException], list[BaseException]]:
    """Sync ``first`` on a thread whose fsync is held; meanwhile sync the entry ``second``
    gives on another; then let the fsyncs finish.  Each thread's errors."""
    fsync.hold()
    running, errors = in_thread(lambda: syncs.sync("/d", first))
    assert fsync.began.wait(10)
    entry = second()
    waiting, waiting_errors = in_thread(lambda: syncs.sync("/d", entry))
    until_waiting(syncs, "/d", 2)
    fsync.began.clear()
    fsync.release()
    running.join(10)
    waiting.join(10)
    assert not running.is_alive() and not waiting.is_alive()
    return errors, waiting_errors


def test_an_fsync_covers_the_entries_numbered_before_it_began() -> None:
    fsync = FakeFsync()
    syncs = DirectorySync(fsync)
    mine, theirs = syncs.entered(), syncs.entered()
    errors, waiting_errors = sync_while_one_runs(syncs, fsync, mine, lambda: theirs)
    assert not errors and not waiting_errors
    assert fsync.calls == ["/d"]  # the one fsync made both durable


def test_an_entry_numbered_while_an_fsync_runs_waits_for_the_next() -> None:
    fsync = FakeFsync()
    syncs = DirectorySync(fsync)
    # The second entry is numbered once the first fsync runs: its link may have missed
    # it, so the waiter must begin its own when that one ends.
    errors, waiting_errors = sync_while_one_runs(syncs, fsync, syncs.entered(), syncs.entered)
    assert not errors and not waiting_errors
    assert fsync.calls == ["/d", "/d"]


def test_directories_are_synced_separately() -> None:
    fsync = FakeFsync()
    syncs = DirectorySync(fsync)
    entry = syncs.entered()
    syncs.sync("/a", entry)
    syncs.sync("/b", entry)  # an fsync of /a says nothing about /b
    assert fsync.calls == ["/a", "/b"]


def test_a_failed_fsync_fails_every_thread_that_relied_on_it() -> None:
    fsync = FakeFsync()
    syncs = DirectorySync(fsync)
    mine, theirs = syncs.entered(), syncs.entered()
    fsync.fail_next = OSError(errno.EIO, "Input/output error")
    errors, waiting_errors = sync_while_one_runs(syncs, fsync, mine, lambda: theirs)
    for failures in (errors, waiting_errors):
        assert len(failures) == 1
        failure = failures[0]
        assert isinstance(failure, OSError)
        assert failure.errno == errno.EIO
        assert failure.filename == "/d"
    assert fsync.calls == ["/d"]
    # The directory is synced again for what is linked after the failure.
    after = syncs.entered()
    syncs.sync("/d", after)
    assert fsync.calls == ["/d", "/d"]


def test_idle_directories_are_forgotten_beyond_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dirsync, "_REMEMBERED", 8)
    fsync = FakeFsync()
    syncs = DirectorySync(fsync)
    for number in range(50):
        syncs.sync(f"/series/{number}", syncs.entered())
    assert len(syncs._directories) <= 8
    assert len(fsync.calls) == 50


def test_real_directories_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    syncs = DirectorySync()
    (tmp_path / "entry").write_bytes(b"")
    syncs.sync(str(tmp_path), syncs.entered())
    assert synced == [str(tmp_path)]


def test_many_threads_each_return_only_after_a_covering_fsync() -> None:
    """Every caller's entry was numbered before some fsync of its directory began."""
    lock = threading.Lock()
    numbered = 0
    began: list[int] = []  # per fsync, the entries numbered when it began
    ended: list[int] = []

    def fsync(directory: str) -> None:
        with lock:
            began.append(numbered)
        time.sleep(0.0002)
        with lock:
            ended.append(began[-1])

    syncs = DirectorySync(fsync)
    violations: list[str] = []

    def worker() -> None:
        nonlocal numbered
        for _ in range(200):
            with lock:
                entry = syncs.entered()
                numbered = max(numbered, entry)
            syncs.sync("/series", entry)
            with lock:
                if not any(covered >= entry for covered in ended):
                    violations.append(f"entry {entry} returned before an fsync covered it")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not violations
    assert len(began) < 800  # some fsyncs were shared
