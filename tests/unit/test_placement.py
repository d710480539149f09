"""Files placed inside the catalog's commit: row and file land together or not at all."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

import xvactor.catalog.writer as writer_module
import xvactor.storage.placement as placement_module
from xvactor.catalog.sqlite import IndexOutcome, write_batch
from xvactor.catalog.writer import CatalogWriter
from xvactor.dicom.records import InstanceRecord
from xvactor.testing.datasets import make_dataset
from xvactor.testing.naive_query import header_record


def record(study: str = "1.2.3", series: str = "1.2.3.4") -> InstanceRecord:
    ds = make_dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    return header_record(ds, path=f"studies/{study}/{series}/{ds.SOPInstanceUID}.dcm")


@pytest.fixture
def writer(tmp_path: Path) -> Any:
    (tmp_path / "studies").mkdir()
    (tmp_path / ".spool").mkdir()
    started = CatalogWriter(tmp_path / "catalog.sqlite", capacity=16, files=tmp_path)
    started.start()
    yield started
    started.stop()


def spool(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / ".spool" / f"{content.hex()[:16]}-{os.urandom(4).hex()}.dcm"
    path.write_bytes(content)
    return path


def rows(tmp_path: Path) -> list[str]:
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    try:
        return [str(r[0]) for r in conn.execute("SELECT path FROM instances")]
    finally:
        conn.close()


def test_a_new_instance_is_placed_and_indexed(tmp_path: Path, writer: CatalogWriter) -> None:
    r = record()
    source = spool(tmp_path, b"first")
    outcome = writer.file(r, source, replace=False, timeout=5)
    assert outcome.written and not outcome.existed
    assert (tmp_path / r.path).read_bytes() == b"first"
    assert source.exists()  # linked: the receive path drops the spool name afterwards
    assert rows(tmp_path) == [r.path]


def test_a_kept_duplicate_places_nothing(tmp_path: Path, writer: CatalogWriter) -> None:
    r = record()
    writer.file(r, spool(tmp_path, b"first"), replace=False, timeout=5)
    again = writer.file(r, spool(tmp_path, b"second"), replace=False, timeout=5)
    assert again.existed and not again.written
    assert (tmp_path / r.path).read_bytes() == b"first"


def test_overwrite_replaces_the_catalogued_file(tmp_path: Path, writer: CatalogWriter) -> None:
    r = record()
    writer.file(r, spool(tmp_path, b"first"), replace=True, timeout=5)
    again = writer.file(r, spool(tmp_path, b"second"), replace=True, timeout=5)
    assert again.existed and again.written
    assert (tmp_path / r.path).read_bytes() == b"second"
    assert rows(tmp_path) == [r.path]


def test_an_orphan_at_the_final_name_is_replaced(tmp_path: Path, writer: CatalogWriter) -> None:
    r = record()
    orphan = tmp_path / r.path
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"torn")  # left by a crash before its commit: no row refers to it
    outcome = writer.file(r, spool(tmp_path, b"whole"), replace=False, timeout=5)
    assert outcome.written
    assert orphan.read_bytes() == b"whole"


def test_files_and_directories_are_durable_before_the_commit(
    tmp_path: Path, writer: CatalogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = record(study="7.7", series="7.7.1")
    source = spool(tmp_path, b"data")
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_ino == source.stat().st_ino:
            target = f"/{r.path}"  # fsynced through the spool name, the same file
        else:
            target = os.readlink(f"/proc/self/fd/{fd}").removeprefix(str(tmp_path))
        # Another connection must not see the row yet: the commit comes after.
        events.append(f"fsync {target} with {len(rows(tmp_path))} rows committed")
        real_fsync(fd)

    def recording_write_batch(conn: sqlite3.Connection, batch: Any, **hooks: Any) -> Any:
        outcomes = write_batch(conn, batch, **hooks)
        events.append("committed")
        return outcomes

    monkeypatch.setattr(placement_module.os, "fsync", fsync)
    monkeypatch.setattr(writer_module, "write_batch", recording_write_batch)
    writer.file(r, source, replace=False, timeout=5)
    assert events == [
        f"fsync /{r.path} with 0 rows committed",
        "fsync /studies/7.7/7.7.1 with 0 rows committed",
        "fsync /studies/7.7 with 0 rows committed",
        "fsync /studies with 0 rows committed",
        "committed",
        "fsync /catalog.sqlite-wal with 1 rows committed",  # before the answer
    ]
    assert rows(tmp_path) == [r.path]


def test_a_failed_fsync_leaves_neither_file_nor_row(
    tmp_path: Path, writer: CatalogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(placement_module.os, "fsync", failing_fsync)
    r = record()
    with pytest.raises(OSError, match="Input/output"):
        writer.file(r, spool(tmp_path, b"data"), replace=False, timeout=5)
    assert not (tmp_path / r.path).exists()
    assert rows(tmp_path) == []


@pytest.mark.parametrize("failing", ["file", "directory"])
def test_a_failed_fsync_of_either_fails_only_that_row(
    tmp_path: Path, writer: CatalogWriter, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    r = record(study="8.8", series="8.8.1")
    source = spool(tmp_path, b"data")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        is_file = os.fstat(fd).st_ino == source.stat().st_ino
        if is_file == (failing == "file"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(placement_module.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        writer.file(r, source, replace=False, timeout=5)
    assert not (tmp_path / r.path).exists()
    assert rows(tmp_path) == []
    monkeypatch.undo()
    # The writer goes on: the same instance files once the disk behaves.
    assert writer.file(r, spool(tmp_path, b"again"), replace=False, timeout=5).written
    assert rows(tmp_path) == [r.path]


def test_a_file_that_cannot_be_linked_fails_alone(
    tmp_path: Path, writer: CatalogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    groups: list[int] = []

    def gated(conn: sqlite3.Connection, batch: Any, **hooks: Any) -> list[IndexOutcome | Exception]:
        groups.append(len(batch))
        if len(groups) == 1:
            entered.set()
            assert release.wait(timeout=10)
        return write_batch(conn, batch, **hooks)

    monkeypatch.setattr(writer_module, "write_batch", gated)
    first = threading.Thread(
        target=lambda: writer.file(record(), spool(tmp_path, b"0"), replace=False, timeout=10)
    )
    first.start()
    assert entered.wait(timeout=10)
    good, bad = record(), record()
    missing = tmp_path / ".spool" / "gone.dcm"
    results: dict[str, object] = {}

    def store(name: str, r: InstanceRecord, source: Path) -> None:
        try:
            results[name] = writer.file(r, source, replace=False, timeout=10)
        except OSError as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=store, args=("good", good, spool(tmp_path, b"1"))),
        threading.Thread(target=store, args=("bad", bad, missing)),
    ]
    for thread in threads:
        thread.start()
    threads[1].join(timeout=10)  # the bad one fails at its link, on its own thread
    for _ in range(2000):
        if writer.queued == 1:
            break
        threading.Event().wait(0.005)
    release.set()
    for thread in (first, *threads):
        thread.join(timeout=10)
    assert groups == [1, 1]
    assert isinstance(results["bad"], FileNotFoundError)
    assert isinstance(results["good"], IndexOutcome) and results["good"].written
    catalogued = rows(tmp_path)
    assert len(catalogued) == 2 and good.path in catalogued and bad.path not in catalogued
    assert not (tmp_path / bad.path).exists()


def test_a_name_another_process_settled_meanwhile_is_left_alone(
    tmp_path: Path, writer: CatalogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our group linked the name first; another process replaced it and committed first."""
    r = record()
    other = tmp_path / ".spool" / "other.dcm"
    other.write_bytes(b"theirs")

    def meanwhile(conn: sqlite3.Connection, batch: Any, **hooks: Any) -> Any:
        # Between our link (done) and our transaction: the other process's group.
        os.replace(other, tmp_path / r.path)
        other_writer = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None)
        write_batch(other_writer, [(r, False)])
        other_writer.close()
        return write_batch(conn, batch, **hooks)

    monkeypatch.setattr(writer_module, "write_batch", meanwhile)
    outcome = writer.file(r, spool(tmp_path, b"ours"), replace=False, timeout=5)
    assert outcome.existed and not outcome.written
    assert (tmp_path / r.path).read_bytes() == b"theirs"  # not unlinked as "ours"
    assert rows(tmp_path) == [r.path]


def test_under_overwrite_a_row_always_describes_the_bytes_at_its_path(
    tmp_path: Path, writer: CatalogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our group linked the name first; another process replaced it and committed first."""
    r = record()
    other = tmp_path / ".spool" / "other.dcm"
    other.write_bytes(b"theirs, longer")

    def meanwhile(conn: sqlite3.Connection, batch: Any, **hooks: Any) -> Any:
        os.replace(other, tmp_path / r.path)
        other_writer = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None)
        write_batch(other_writer, [(msgspec.structs.replace(r, size=14), True)])
        other_writer.close()
        return write_batch(conn, batch, **hooks)

    monkeypatch.setattr(writer_module, "write_batch", meanwhile)
    ours = msgspec.structs.replace(r, size=4)
    outcome = writer.file(ours, spool(tmp_path, b"ours"), replace=True, timeout=5)
    assert outcome.written
    assert (tmp_path / r.path).read_bytes() == b"ours"  # put back before our row
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    assert conn.execute("SELECT size FROM instances").fetchall() == [(4,)]
    conn.close()


def test_a_name_replaced_right_after_our_link_is_never_taken_for_ours(
    tmp_path: Path, writer: CatalogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the four-senders test: the inode must come from our spool, not the name."""
    r = record()
    other = tmp_path / ".spool" / "other.dcm"
    other.write_bytes(b"theirs")
    real_link = os.link

    def link_then_raced(source: str, target: str) -> None:
        real_link(source, target)
        if target.endswith(r.path):  # another process takes the name as an orphan, and
            os.replace(other, target)  # commits its row, before we look at our link
            conn = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None)
            write_batch(conn, [(r, False)])
            conn.close()

    monkeypatch.setattr(placement_module.os, "link", link_then_raced)
    outcome = writer.file(r, spool(tmp_path, b"ours"), replace=False, timeout=5)
    assert outcome.existed and not outcome.written
    assert (tmp_path / r.path).read_bytes() == b"theirs"  # their committed file stays
