"""Files an interrupted run left without a catalog row are set aside at start, nothing else."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from xvactor.catalog.sqlite import open_catalog, write_batch
from xvactor.storage import orphans
from xvactor.storage.orphans import Orphan, find_candidates, set_aside, sweep, unreferenced
from xvactor.testing.datasets import make_dataset
from xvactor.testing.naive_query import header_record


def catalogue(data: Path, study: str, series: str) -> Path:
    """A file at its final name with its row, as a completed C-STORE leaves it."""
    ds = make_dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    relative = f"studies/{study}/{series}/{ds.SOPInstanceUID}.dcm"
    conn = open_catalog(data / "catalog.sqlite")
    try:
        write_batch(conn, [(header_record(ds, path=relative), False)])
    finally:
        conn.close()
    return place(data, relative)


def unreferenced_files(data: Path, files: list[Orphan]) -> list[Orphan]:
    conn = sqlite3.connect(data / "catalog.sqlite")
    try:
        return unreferenced(conn, files)
    finally:
        conn.close()


def place(data: Path, relative: str, content: bytes = b"data") -> Path:
    path = data / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_only_files_without_a_row_are_removed(tmp_path: Path) -> None:
    kept = catalogue(tmp_path, "1.2", "1.2.3")
    orphan = place(tmp_path, "studies/1.2/1.2.3/1.2.3.99.dcm", b"half")
    elsewhere = place(tmp_path, "studies/7.7/7.7.1/7.7.1.5.dcm")
    # The same instance at another path than its row's (a crash after an overwrite moved
    # it to another series, before the old file was removed).
    moved = place(tmp_path, f"studies/8.8/8.8.1/{kept.name}")
    not_instance = place(tmp_path, "studies/1.2/1.2.3/notes.txt")
    removed = sweep(
        tmp_path, tmp_path / "catalog.sqlite", "studies", started_ns=time.time_ns() + 2 * 10**9
    )
    assert removed == 3
    assert kept.read_bytes() == b"data"
    assert not orphan.exists() and not elsewhere.exists() and not moved.exists()
    assert not_instance.exists()
    aside = tmp_path / ".orphans"
    assert (aside / "studies/1.2/1.2.3/1.2.3.99.dcm").read_bytes() == b"half"
    assert (aside / "studies/7.7/7.7.1/7.7.1.5.dcm").is_file()
    assert (aside / f"studies/8.8/8.8.1/{kept.name}").is_file()


def test_files_linked_during_this_run_are_left_alone(tmp_path: Path) -> None:
    catalogue(tmp_path, "1.2", "1.2.3")
    started = time.time_ns()
    filing = place(tmp_path, "studies/1.2/1.2.3/1.2.3.50.dcm")  # linked, row not yet written
    # Even if the file's (coarse) clock put its link a little before the start.
    assert sweep(tmp_path, tmp_path / "catalog.sqlite", "studies", started_ns=started) == 0
    assert filing.exists()
    recent = time.time_ns() + orphans.CLOCK_MARGIN_NS // 2
    assert sweep(tmp_path, tmp_path / "catalog.sqlite", "studies", started_ns=recent) == 0
    assert filing.exists()


def test_a_candidate_replaced_meanwhile_is_left_alone(tmp_path: Path) -> None:
    catalogue(tmp_path, "1.2", "1.2.3")
    orphan = place(tmp_path, "studies/1.2/1.2.3/1.2.3.77.dcm", b"old")
    (candidates,) = [
        unreferenced_files(tmp_path, group)
        for group in find_candidates(tmp_path, "studies", before_ns=time.time_ns() + 10**9)
        if any(c.relative.endswith("1.2.3.77.dcm") for c in group)
    ]
    assert [c.relative for c in candidates] == ["studies/1.2/1.2.3/1.2.3.77.dcm"]
    # Another process's writer replaces the orphan with its instance (os.replace, under
    # the write lock); its row may not be committed yet.
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"new")
    os.replace(fresh, orphan)
    conn = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None)
    try:
        removed = set_aside(conn, tmp_path, candidates)
    finally:
        conn.close()
    assert removed == 0
    assert orphan.read_bytes() == b"new"


def test_removal_waits_for_the_write_lock(tmp_path: Path) -> None:
    """A writer holding the lock (settling names) is never raced."""
    catalogue(tmp_path, "1.2", "1.2.3")
    orphan = place(tmp_path, "studies/1.2/1.2.3/1.2.3.88.dcm")
    holder = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    conn = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None, timeout=0.05)
    candidate = Orphan(relative="studies/1.2/1.2.3/1.2.3.88.dcm", inode=orphan.stat().st_ino)
    try:
        try:
            set_aside(conn, tmp_path, [candidate])
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
        else:
            raise AssertionError("removed a file while another connection held the lock")
        assert orphan.exists()
        holder.execute("ROLLBACK")
        assert set_aside(conn, tmp_path, [candidate]) == 1
    finally:
        holder.close()
        conn.close()
    assert not orphan.exists()


def test_a_catalog_without_rows_sets_nothing_aside(tmp_path: Path) -> None:
    """A new or replaced catalog: every file would look orphaned; none is touched."""
    open_catalog(tmp_path / "catalog.sqlite").close()
    stored = place(tmp_path, "studies/1.2/1.2.3/1.2.3.4.dcm")
    started = time.time_ns() + 2 * 10**9
    assert sweep(tmp_path, tmp_path / "catalog.sqlite", "studies", started_ns=started) == 0
    assert stored.exists()


def test_no_catalog_no_sweep(tmp_path: Path) -> None:
    orphan = place(tmp_path, "studies/1.2/1.2.3/1.2.3.4.dcm")
    started = time.time_ns() + 2 * 10**9
    assert sweep(tmp_path, tmp_path / "catalog.sqlite", "studies", started_ns=started) == 0
    assert orphan.exists()
