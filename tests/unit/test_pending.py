"""Small instances held in the catalog's commit, then written at their names."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import xvactor.storage.pending as pending_module
from xvactor.catalog.sqlite import open_catalog
from xvactor.catalog.writer import CatalogWriter
from xvactor.dicom.records import InstanceRecord
from xvactor.storage.pending import (
    PENDING_DIR,
    Materializer,
    hold,
    materialize,
    materialize_all,
    materialize_paths,
)
from xvactor.testing.datasets import make_dataset
from xvactor.testing.naive_query import header_record


def record(study: str = "1.2.3", series: str = "1.2.3.4") -> InstanceRecord:
    ds = make_dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    return header_record(ds, path=f"studies/{study}/{series}/{ds.SOPInstanceUID}.dcm")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    opened = open_catalog(tmp_path / "catalog.sqlite")
    yield opened
    opened.close()


def held(conn: sqlite3.Connection, path: str, content: bytes, owner: str = "x") -> int:
    """Hold ``content`` at ``path`` as the writer does: a copy held there before is older."""
    conn.execute("BEGIN IMMEDIATE")
    pending_module.release(conn, path)
    hold(conn, path, content, owner)
    conn.execute("COMMIT")
    return int(conn.execute("SELECT MAX(pending_pk) FROM pending_files").fetchone()[0])


def pending_paths(conn: sqlite3.Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT path FROM pending_files")]


@pytest.mark.parametrize("locked", [True, False])
def test_a_held_file_is_written_at_its_name_then_forgotten(
    tmp_path: Path, conn: sqlite3.Connection, locked: bool
) -> None:
    held(conn, "studies/1/2/3.dcm", b"content")
    assert materialize(conn, tmp_path, locked=locked) == 1
    assert (tmp_path / "studies/1/2/3.dcm").read_bytes() == b"content"
    assert pending_paths(conn) == []
    assert list((tmp_path / PENDING_DIR).iterdir()) == []  # no scratch file left
    assert materialize(conn, tmp_path) == 0


def test_a_newer_copy_replaces_the_held_one_and_the_older_never_lands(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    older = held(conn, "studies/1/2/3.dcm", b"older")
    held(conn, "studies/1/2/3.dcm", b"newer")
    assert pending_paths(conn) == ["studies/1/2/3.dcm"]
    assert materialize(conn, tmp_path, keys=[older]) == 0
    assert not (tmp_path / "studies/1/2/3.dcm").exists()
    materialize_all(conn, tmp_path)
    assert (tmp_path / "studies/1/2/3.dcm").read_bytes() == b"newer"


def test_a_copy_replaced_while_its_bytes_are_written_is_not_renamed(
    tmp_path: Path, conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row is checked again under the write lock: an overwrite in between wins."""
    held(conn, "studies/1/2/3.dcm", b"older")
    other = open_catalog(tmp_path / "catalog.sqlite")
    write = pending_module._write

    def write_then_replaced(path: str, content: bytes) -> None:
        write(path, content)
        other.execute("BEGIN IMMEDIATE")
        pending_module.release(other, "studies/1/2/3.dcm")  # what an overwrite does
        other.execute("COMMIT")

    monkeypatch.setattr(pending_module, "_write", write_then_replaced)
    try:
        assert materialize(conn, tmp_path) == 1
    finally:
        other.close()
    assert not (tmp_path / "studies/1/2/3.dcm").exists()
    assert list((tmp_path / PENDING_DIR).iterdir()) == []


def test_whatever_is_at_the_name_is_replaced_by_the_held_copy(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    """A file left by a crash there (maybe incomplete) is not what the row describes."""
    final = tmp_path / "studies/1/2/3.dcm"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"half")
    held(conn, "studies/1/2/3.dcm", b"whole")
    materialize_all(conn, tmp_path)
    assert final.read_bytes() == b"whole"


def test_without_syncfs_each_file_and_directory_is_fsynced(
    tmp_path: Path, conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(pending_module, "_SYNCFS", None)
    monkeypatch.setattr(pending_module, "fsync_directory", lambda d: synced.append(str(d)))
    held(conn, "studies/1/2/3.dcm", b"a")
    held(conn, "studies/1/2/4.dcm", b"b")
    assert materialize_all(conn, tmp_path) == 2
    # The series directory (new entries) and the directories that gained new ones.
    assert set(synced) == {str(tmp_path / d) for d in ("studies/1/2", "studies/1", "studies", "")}


def test_a_file_that_cannot_be_written_stays_held(tmp_path: Path, conn: sqlite3.Connection) -> None:
    (tmp_path / "studies").write_bytes(b"not a directory")
    held(conn, "studies/1/2/3.dcm", b"content")
    with pytest.raises(OSError):
        materialize(conn, tmp_path)
    assert pending_paths(conn) == ["studies/1/2/3.dcm"]
    assert list((tmp_path / PENDING_DIR).iterdir()) == []
    (tmp_path / "studies").unlink()
    assert materialize_paths(conn, tmp_path, ["studies/1/2/3.dcm", "studies/9.dcm"]) == 1
    assert (tmp_path / "studies/1/2/3.dcm").read_bytes() == b"content"


def test_a_materializer_writes_what_an_earlier_run_left_when_it_starts(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    held(conn, "studies/1/2/3.dcm", b"left by a crash", owner="a dead process")
    scratch = tmp_path / PENDING_DIR
    scratch.mkdir()
    (scratch / "999999999-1-7.tmp").write_bytes(b"half")  # left by a dead process
    (scratch / f"{os.getpid()}-1-8.tmp").write_bytes(b"in use")  # a live one's
    materializer = Materializer(tmp_path / "catalog.sqlite", tmp_path)
    materializer.start()
    try:
        assert (tmp_path / "studies/1/2/3.dcm").read_bytes() == b"left by a crash"
    finally:
        materializer.stop()
    assert pending_paths(conn) == []
    assert sorted(p.name for p in scratch.iterdir()) == [f"{os.getpid()}-1-8.tmp"]


def test_a_materializer_writes_its_writer_s_files_when_told(
    tmp_path: Path, conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    materializer = Materializer(tmp_path / "catalog.sqlite", tmp_path)
    materializer.start()
    done = threading.Event()
    drain = materializer._drain

    def drained(connection: sqlite3.Connection, turn: object) -> None:
        drain(connection, turn)  # type: ignore[arg-type]
        done.set()

    monkeypatch.setattr(materializer, "_drain", drained)
    try:
        held(conn, "studies/1/2/3.dcm", b"mine", owner=materializer.owner)
        materializer.notify()
        assert done.wait(10)
        assert (tmp_path / "studies/1/2/3.dcm").read_bytes() == b"mine"
    finally:
        materializer.stop()


def gated(writer: CatalogWriter) -> threading.Event:
    """Keep ``writer``'s materializer from writing anything until the event is set."""
    materializer = writer._materializer
    assert materializer is not None
    gate = threading.Event()
    drain = materializer._drain
    materializer._drain = lambda c, t: (gate.wait(10), drain(c, t))[1]  # type: ignore[method-assign]
    return gate


def placed_flags(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as check:
        return {str(p): int(f) for p, f in check.execute("SELECT path, placed FROM pending_files")}


def test_the_writer_holds_small_files_and_has_them_written(tmp_path: Path) -> None:
    """One commit makes row and bytes durable; the file is at its name by the stop."""
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=16, files=tmp_path)
    writer.start()
    first, second = record(), record(study="1.5", series="1.5.6")
    spools = iter(tmp_path / f"spool-{n}.dcm" for n in range(4))  # created by the writer
    try:
        assert writer.file(first, next(spools), replace=False, timeout=5, content=b"one").written
        assert writer.file(second, next(spools), replace=False, timeout=5, content=b"two").written
        # The same instance again: kept (keep_first), then replaced (overwrite).
        kept = writer.file(first, next(spools), replace=False, timeout=5, content=b"again")
        assert not kept.written
        replaced = writer.file(first, next(spools), replace=True, timeout=5, content=b"newest")
        assert replaced.written
    finally:
        writer.stop()
    assert (tmp_path / first.path).read_bytes() == b"newest"
    assert (tmp_path / second.path).read_bytes() == b"two"
    assert not list(tmp_path.glob("spool-*"))  # no spool name left behind
    with sqlite3.connect(tmp_path / "catalog.sqlite") as check:
        assert check.execute("SELECT COUNT(*) FROM pending_files").fetchone()[0] == 0
        assert check.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 2


def test_a_held_file_is_at_its_name_when_the_writer_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placed before the commit (not yet durable there); the materializer then only makes
    it durable, without writing it again, and forgets it (policy ``keep_first``)."""
    writer = CatalogWriter(
        tmp_path / "catalog.sqlite", capacity=16, files=tmp_path, overwrites=False
    )
    writer.start()
    gate = gated(writer)
    r = record()
    synced: list[int] = []
    monkeypatch.setattr(pending_module, "_SYNCFS", lambda fd: synced.append(fd) or 0)

    def rewritten(path: str, content: bytes) -> None:
        raise AssertionError("a placed file is written again")

    monkeypatch.setattr(pending_module, "_write", rewritten)
    try:
        outcome = writer.file(r, tmp_path / "spool.dcm", replace=False, timeout=5, content=b"a")
        assert outcome.written
        assert (tmp_path / r.path).read_bytes() == b"a"  # before any materializer ran
        assert not (tmp_path / "spool.dcm").exists()
        assert placed_flags(tmp_path / "catalog.sqlite") == {r.path: 1}
    finally:
        gate.set()
        writer.stop()
    assert synced  # made durable where it is
    assert placed_flags(tmp_path / "catalog.sqlite") == {}
    assert (tmp_path / r.path).read_bytes() == b"a"


def test_a_held_file_whose_name_is_taken_is_written_by_the_materializer(
    tmp_path: Path,
) -> None:
    """A file without a row at the name (a crash's orphan): the held copy replaces it."""
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=16, files=tmp_path)
    r = record()
    final = tmp_path / r.path
    final.parent.mkdir(parents=True)
    final.write_bytes(b"orphan")
    writer.start()
    gate = gated(writer)
    try:
        outcome = writer.file(r, tmp_path / "spool.dcm", replace=False, timeout=5, content=b"b")
        assert outcome.written
        assert not (tmp_path / "spool.dcm").exists()  # never created
        assert placed_flags(tmp_path / "catalog.sqlite") == {r.path: 0}
    finally:
        gate.set()
        writer.stop()
    assert final.read_bytes() == b"b"
    assert placed_flags(tmp_path / "catalog.sqlite") == {}


def test_placed_files_are_written_again_when_rows_may_be_replaced(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    """Under ``overwrite`` (and at start-up) the catalog's copy is written over whatever is
    at the name, placed or not."""
    final = tmp_path / "studies/1/2/3.dcm"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"not what was placed")
    conn.execute("BEGIN IMMEDIATE")
    hold(conn, "studies/1/2/3.dcm", b"placed", "x", placed=True)
    conn.execute("COMMIT")
    assert materialize(conn, tmp_path, locked=True) == 1
    assert final.read_bytes() == b"placed"


def test_without_syncfs_a_placed_file_and_its_directories_are_fsynced(
    tmp_path: Path, conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "studies/1/2/3.dcm"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"placed")
    files: list[int] = []
    synced: list[str] = []
    monkeypatch.setattr(pending_module, "_SYNCFS", None)
    monkeypatch.setattr(pending_module.os, "fsync", files.append)
    monkeypatch.setattr(pending_module, "fsync_directory", lambda d: synced.append(str(d)))
    conn.execute("BEGIN IMMEDIATE")
    hold(conn, "studies/1/2/3.dcm", b"placed", "x", placed=True)
    conn.execute("COMMIT")
    assert materialize(conn, tmp_path, owner="x", locked=False, trust_placed=True) == 1
    assert len(files) == 1
    assert set(synced) == {str(tmp_path / d) for d in ("studies/1/2", "studies/1", "studies")}
    assert pending_paths(conn) == []


def test_an_overwrite_through_the_file_path_drops_the_held_copy(tmp_path: Path) -> None:
    """A large copy of a held small instance, under ``overwrite``: the large one stays."""
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=16, files=tmp_path)
    (tmp_path / ".spool").mkdir()
    r = record()
    large = tmp_path / ".spool" / "large.dcm"
    large.write_bytes(b"large copy")
    writer.start()
    gate = gated(writer)
    try:
        small = tmp_path / "spool.dcm"
        assert writer.file(r, small, replace=False, timeout=5, content=b"s").written
        assert writer.file(r, large, replace=True, timeout=5).written
    finally:
        gate.set()
        writer.stop()
    assert (tmp_path / r.path).read_bytes() == b"large copy"


def test_a_version_1_catalog_gains_the_placed_column(tmp_path: Path) -> None:
    """A catalog of the previous version opens, and what it held is written as before."""
    database = tmp_path / "catalog.sqlite"
    with sqlite3.connect(database) as old:
        old.execute(
            "CREATE TABLE pending_files (pending_pk INTEGER PRIMARY KEY AUTOINCREMENT, "
            "path TEXT NOT NULL, content BLOB NOT NULL, owner TEXT NOT NULL)"
        )
        old.execute(
            "INSERT INTO pending_files (path, content, owner) VALUES ('studies/1/2/3.dcm', "
            "x'6f6c64', 'gone')"
        )
        old.execute("PRAGMA user_version=1")
    conn = open_catalog(database)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert placed_flags(database) == {"studies/1/2/3.dcm": 0}
        assert materialize_all(conn, tmp_path) == 1
        assert (tmp_path / "studies/1/2/3.dcm").read_bytes() == b"old"
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 0
    finally:
        conn.close()
    open_catalog(database).close()  # opened again: nothing left to upgrade
