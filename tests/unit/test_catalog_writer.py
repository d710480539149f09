"""The catalog writer thread: group commit from plain threads, deadlines, bounds, stop."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import xvactor.catalog.writer as writer_module
from xvactor.catalog.sqlite import IndexOutcome, count_instances, write_batch
from xvactor.catalog.writer import CatalogWriter, CommitPending
from xvactor.dicom.records import InstanceRecord
from xvactor.dicom.status import OutOfResources
from xvactor.testing.datasets import make_dataset
from xvactor.testing.naive_query import header_record


def record() -> InstanceRecord:
    ds = make_dataset()
    return header_record(ds, path=f"studies/{ds.SOPInstanceUID}.dcm")


class Gate:
    """Holds the first commit until released, and records every group's size."""

    def __init__(self) -> None:
        self.groups: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_batch(
        self, conn: sqlite3.Connection, batch: list[tuple[InstanceRecord, bool]], **hooks: Any
    ) -> list[IndexOutcome | Exception]:
        self.groups.append(len(batch))
        if len(self.groups) == 1:
            self.entered.set()
            assert self.release.wait(timeout=10)
        return write_batch(conn, batch, **hooks)


def started(tmp_path: Path, capacity: int = 64) -> CatalogWriter:
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=capacity)
    writer.start()
    return writer


def wait_queued(writer: CatalogWriter, count: int) -> None:
    deadline = threading.Event()
    for _ in range(2000):
        if writer.queued >= count:
            return
        deadline.wait(0.005)
    raise AssertionError(f"only {writer.queued} of {count} requests reached the queue")


def test_requests_from_threads_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(writer_module, "write_batch", gate.write_batch)
    writer = started(tmp_path)
    records = [record() for _ in range(12)]
    outcomes: list[IndexOutcome] = []

    def index(r: InstanceRecord) -> None:
        outcomes.append(writer.index(r, replace=False, timeout=10))

    threads = [threading.Thread(target=index, args=(records[0],))]
    threads[0].start()
    assert gate.entered.wait(timeout=10)
    # While the first commit is on disk, 11 more arrive: they form ONE next group.
    threads += [threading.Thread(target=index, args=(r,)) for r in records[1:]]
    for thread in threads[1:]:
        thread.start()
    wait_queued(writer, 11)
    gate.release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert gate.groups == [1, 11]
    assert all(o.written and not o.existed for o in outcomes) and len(outcomes) == 12
    assert writer.call(count_instances, timeout=5) == 12
    writer.stop()


def test_a_commit_past_its_deadline_is_pending_and_lands_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(writer_module, "write_batch", gate.write_batch)
    writer = started(tmp_path)
    with pytest.raises(CommitPending, match=r"not done in 0\.2 s"):
        writer.index(record(), replace=False, timeout=0.2)
    gate.release.set()
    assert writer.call(count_instances, timeout=5) == 1  # queued behind the late commit
    writer.stop()


def test_a_full_queue_refuses_after_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(writer_module, "write_batch", gate.write_batch)
    writer = started(tmp_path, capacity=1)
    first = threading.Thread(target=lambda: writer.index(record(), replace=False, timeout=10))
    first.start()
    assert gate.entered.wait(timeout=10)
    second = threading.Thread(target=lambda: writer.index(record(), replace=False, timeout=10))
    second.start()
    wait_queued(writer, 1)
    with pytest.raises(OutOfResources, match="saturated") as refused:
        writer.index(record(), replace=False, timeout=0.1)
    assert not isinstance(refused.value, CommitPending)  # never queued: nothing may land
    gate.release.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert writer.call(count_instances, timeout=5) == 2
    writer.stop()


def test_a_stopped_writer_refuses_and_a_restarted_one_serves(tmp_path: Path) -> None:
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=4)
    with pytest.raises(OutOfResources, match="not running"):
        writer.index(record(), replace=False, timeout=1)
    writer.start()
    writer.index(record(), replace=False, timeout=5)
    writer.stop()
    with pytest.raises(OutOfResources, match="not running"):
        writer.call(count_instances, timeout=1)
    writer.start()
    assert writer.call(count_instances, timeout=5) == 1
    writer.stop()


def test_stop_commits_what_is_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate()
    monkeypatch.setattr(writer_module, "write_batch", gate.write_batch)
    writer = started(tmp_path)
    threads = [
        threading.Thread(target=lambda: writer.index(record(), replace=False, timeout=10))
        for _ in range(3)
    ]
    threads[0].start()
    assert gate.entered.wait(timeout=10)
    for thread in threads[1:]:
        thread.start()
    wait_queued(writer, 2)
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    gate.release.set()
    stopper.join(timeout=10)
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    assert count_instances(conn) == 3
    conn.close()


def test_a_failing_row_fails_alone_and_a_failing_call_reaches_its_caller(
    tmp_path: Path,
) -> None:
    writer = started(tmp_path)
    good = record()
    writer.index(good, replace=False, timeout=5)
    again = writer.index(good, replace=False, timeout=5)
    assert again.existed and not again.written

    def broken(conn: sqlite3.Connection) -> int:
        raise sqlite3.OperationalError("no such table: nothing")

    with pytest.raises(sqlite3.OperationalError, match="nothing"):
        writer.call(broken, timeout=5)
    assert writer.call(count_instances, timeout=5) == 1  # the thread goes on
    writer.stop()


def test_a_catalog_that_cannot_open_fails_start(tmp_path: Path) -> None:
    (tmp_path / "catalog.sqlite").mkdir()  # a directory where the file should be
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=4)
    with pytest.raises(sqlite3.OperationalError):
        writer.start()
    with pytest.raises(OutOfResources, match="not running"):
        writer.index(record(), replace=False, timeout=1)


def test_a_bug_in_a_commit_fails_its_group_and_the_thread_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = writer_module._commit
    calls: list[int] = []

    def buggy_once(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real_commit(*args)

    monkeypatch.setattr(writer_module, "_commit", buggy_once)
    writer = started(tmp_path)
    with pytest.raises(RuntimeError, match="a bug"):
        writer.index(record(), replace=False, timeout=5)
    assert writer.index(record(), replace=False, timeout=5).written
    writer.stop()


def test_a_group_waits_for_announced_requests_but_not_for_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups: list[int] = []

    def recording(conn: sqlite3.Connection, batch: Any, **hooks: Any) -> Any:
        groups.append(len(batch))
        return write_batch(conn, batch, **hooks)

    monkeypatch.setattr(writer_module, "write_batch", recording)
    monkeypatch.setattr(writer_module, "COMMIT_DELAY", 5.0)
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=16, files=tmp_path)
    writer.start()
    # Nothing announced: a request commits at once, whatever the delay.
    writer.index(record(), replace=False, timeout=2)
    assert groups == [1]
    # Another request is announced while the first is queued: they share a commit.
    writer.begin_filing()
    first = threading.Thread(target=lambda: writer.index(record(), replace=False, timeout=10))
    first.start()
    threading.Event().wait(0.2)  # the writer takes it and holds the group open
    assert groups == [1]
    writer.end_filing()
    writer.index(record(), replace=False, timeout=10)
    first.join(timeout=10)
    assert groups == [1, 2]
    writer.stop()
