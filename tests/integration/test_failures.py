"""Resources failing under a C-STORE: a full disk, a stalled catalog."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import xvactor.catalog.writer as writer_module
import xvactor.dicom.spool as spool_module
from tests.integration.helpers import stored_path
from tests.integration.test_store_status import instance_count, leftovers, send
from xvactor.catalog.sqlite import write_batch
from xvactor.testing.datasets import make_dataset


class _FillsUp:
    """A file whose disk fills after ``room`` bytes."""

    def __init__(self, path: Path, room: int) -> None:
        self._file: BinaryIO = path.open("xb")
        self._room = room
        self.name = self._file.name

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def test_disk_full_while_spooling_answers_a700_and_keeps_the_association(
    make_node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = make_node()
    monkeypatch.setattr(
        spool_module, "_create", lambda path, direct_io, keep_up_to: _FillsUp(path, 4096)
    )
    status = send(handle, make_dataset(rows=128, columns=128))
    assert status.Status == 0xA700
    assert status.ErrorComment == "Out of disk space"
    assert instance_count(handle) == 0
    assert leftovers(handle) == []
    # Space again: the node stores as before.
    monkeypatch.undo()
    ds = make_dataset()
    assert send(handle, ds).Status == 0x0000
    assert stored_path(handle, ds).is_file()


def test_stalled_catalog_answers_a700_and_never_leaves_a_row_without_its_file(
    make_node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def stalled_write_batch(conn, batch, **hooks):  # type: ignore[no-untyped-def]
        release.wait(timeout=30)
        return write_batch(conn, batch, **hooks)

    monkeypatch.setattr(writer_module, "write_batch", stalled_write_batch)
    handle = make_node(timeouts={"store": 1.0})
    ds = make_dataset()
    status = send(handle, ds)
    assert status.Status == 0xA700
    release.set()
    # The stalled group ends before the next one: once the retry is answered, the first
    # attempt has either landed whole (row and file) or left nothing; never half of it.
    assert send(handle, ds).Status == 0x0000
    rows = handle.catalog_rows("SELECT path FROM instances")
    assert len(rows) == 1
    (path,) = rows[0]
    assert stored_path(handle, ds).is_file()  # written at its name, if still held
    assert (handle.data_dir / str(path)).is_file()
    assert [p for p in leftovers(handle) if ".spool" in p.parts] == []


def test_a_file_meta_that_cannot_be_written_leaves_no_spool_file(
    make_node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = make_node()

    def cannot_encode(meta: object) -> bytes:
        raise UnicodeEncodeError("ascii", "Ü", 0, 1, "not ASCII")

    monkeypatch.setattr(spool_module, "encode_file_meta", cannot_encode)
    status = send(handle, make_dataset())
    assert status.Status == 0x0110  # Processing failure, with the reason in ErrorComment
    assert instance_count(handle) == 0
    assert leftovers(handle) == []
