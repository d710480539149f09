"""Catalog commits flushed after the write lock: nobody is answered before the flush."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

import xvactor.catalog.walsync as walsync_module
from xvactor.catalog.sqlite import open_catalog
from xvactor.catalog.walsync import WalSync
from xvactor.catalog.writer import CatalogWriter
from xvactor.dicom.records import InstanceRecord
from xvactor.dicom.status import OutOfResources
from xvactor.testing.datasets import make_dataset
from xvactor.testing.naive_query import header_record


def record() -> InstanceRecord:
    ds = make_dataset()
    return header_record(ds, path=f"studies/1/2/{ds.SOPInstanceUID}.dcm")


def test_the_wal_is_fsynced_and_reopened_when_sqlite_replaced_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "catalog.sqlite"
    conn = open_catalog(database)
    conn.execute("CREATE TABLE t (x)")
    synced: list[int] = []
    fsync = os.fsync
    monkeypatch.setattr(walsync_module.os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
    wal = WalSync(database)
    try:
        wal.sync()
        wal.sync()
        first = os.fstat(synced[0]).st_ino
        conn.close()  # the last connection: SQLite deletes the WAL
        assert not Path(f"{database}-wal").exists()
        conn = open_catalog(database)
        conn.execute("INSERT INTO t VALUES (1)")
        wal.sync()
        assert os.fstat(synced[-1]).st_ino == os.stat(f"{database}-wal").st_ino != first
    finally:
        wal.close()
        conn.close()


def test_callers_are_answered_only_after_the_wal_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed, entered = threading.Event(), threading.Event()
    sync = WalSync.sync

    def held_sync(self: WalSync) -> None:
        entered.set()
        assert flushed.wait(10)
        sync(self)

    monkeypatch.setattr(WalSync, "sync", held_sync)
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=8)
    writer.start()
    answered = threading.Event()

    def index() -> None:
        writer.index(record(), replace=False, timeout=10)
        answered.set()

    thread = threading.Thread(target=index)
    try:
        thread.start()
        assert entered.wait(10)
        # Committed (another connection sees the row) but not yet answered.
        with sqlite3.connect(tmp_path / "catalog.sqlite") as other:
            assert other.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1
        assert not answered.wait(0.2)
        flushed.set()
        assert answered.wait(10)
    finally:
        flushed.set()
        thread.join(10)
        writer.stop()


def test_a_failed_flush_fails_the_group_and_every_later_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_sync(self: WalSync) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(WalSync, "sync", failing_sync)
    writer = CatalogWriter(tmp_path / "catalog.sqlite", capacity=8)
    writer.start()
    try:
        with pytest.raises(OutOfResources, match="not flushed to disk: Input/output error"):
            writer.index(record(), replace=False, timeout=10)
        with pytest.raises(OutOfResources, match="not flushed to disk"):
            writer.index(record(), replace=False, timeout=10)  # refused at once
    finally:
        writer.stop()
