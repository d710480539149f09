"""The spool file: bytes land exactly as written, whichever way they were written."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from xvactor.dicom import spoolfile
from xvactor.dicom.spoolfile import HEAD_BYTES, STAGE_BYTES, SpoolFile

SIZES = [0, 1, 4095, 4096, STAGE_BYTES - 1, STAGE_BYTES, STAGE_BYTES + 1, 3 * STAGE_BYTES + 777]


def write_in_pieces(spool: SpoolFile, data: bytes, seed: int) -> None:
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        step = rng.choice([1, 7, 4096, 16_384, 65_536, STAGE_BYTES + 5])
        assert spool.write(memoryview(data)[at : at + step]) == len(data[at : at + step])
        at += step


@pytest.mark.parametrize("size", SIZES)
def test_the_file_holds_exactly_what_was_written(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "a.dcm"
    spool = SpoolFile(path)
    write_in_pieces(spool, data, size)
    spool.flush()
    assert path.read_bytes() == data  # complete after flush, before close
    assert spool.head == data[:HEAD_BYTES]
    assert spool.size == size
    spool.close()
    spool.close()  # idempotent
    assert path.read_bytes() == data


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every switch of ``O_DIRECT`` on (``True``) or off, in order."""
    switches: list[bool] = []
    real = SpoolFile._set_direct

    def spy(self: SpoolFile, on: bool) -> None:
        switches.append(on)
        real(self, on)

    monkeypatch.setattr(SpoolFile, "_set_direct", spy)
    return switches


def test_large_objects_bypass_the_page_cache_and_small_ones_do_not(
    tmp_path: Path, direct: list[bool]
) -> None:
    small = SpoolFile(tmp_path / "small.dcm")
    small.write(os.urandom(STAGE_BYTES - 1))
    small.close()
    assert True not in direct
    direct.clear()
    large = SpoolFile(tmp_path / "large.dcm")
    data = os.urandom(2 * STAGE_BYTES + 3)
    large.write(data)
    large.close()
    assert direct[:1] == [True] and direct[-1] is False  # the unaligned tail is buffered
    assert (tmp_path / "large.dcm").read_bytes() == data


def test_direct_io_can_be_turned_off(tmp_path: Path, direct: list[bool]) -> None:
    data = os.urandom(2 * STAGE_BYTES + 3)
    spool = SpoolFile(tmp_path / "a.dcm", direct_io=False)
    spool.write(data)
    spool.close()
    assert True not in direct
    assert (tmp_path / "a.dcm").read_bytes() == data


def test_a_file_system_without_o_direct_gets_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def refuses_direct(fd: int, data: bytes | memoryview) -> int:
        if spoolfile.fcntl.fcntl(fd, spoolfile.fcntl.F_GETFL) & spoolfile._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(spoolfile.os, "write", refuses_direct)
    data = os.urandom(3 * STAGE_BYTES + 10)
    spool = SpoolFile(tmp_path / "a.dcm")
    write_in_pieces(spool, data, 1)
    spool.close()
    assert (tmp_path / "a.dcm").read_bytes() == data


def test_a_full_disk_raises_and_discard_releases_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    spool = SpoolFile(tmp_path / "a.dcm")
    monkeypatch.setattr(spoolfile.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        spool.write(os.urandom(STAGE_BYTES))
    spool.discard()
    spool.discard()
    with pytest.raises(ValueError, match="closed"):
        spool.write(b"x")
    assert len(spoolfile._free) <= spoolfile._KEPT_BUFFERS


def test_staging_buffers_are_reused(tmp_path: Path) -> None:
    for n in range(3):
        SpoolFile(tmp_path / f"{n}.dcm").close()
    before = len(spoolfile._free)
    spool = SpoolFile(tmp_path / "again.dcm")
    assert len(spoolfile._free) == before - 1
    spool.close()
    assert len(spoolfile._free) == before


def test_an_existing_name_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(b"keep")
    spool = SpoolFile(tmp_path / "a.dcm")  # created when the first bytes are written out
    spool.write(b"other")
    with pytest.raises(FileExistsError):
        spool.flush()
    spool.discard()
    assert (tmp_path / "a.dcm").read_bytes() == b"keep"


def test_a_small_object_is_kept_in_memory_and_never_becomes_a_file(tmp_path: Path) -> None:
    data = os.urandom(5000)
    spool = SpoolFile(tmp_path / "a.dcm", keep_up_to=5000)
    write_in_pieces(spool, data, 5000)
    spool.flush()
    spool.close()
    assert not spool.on_disk
    assert not (tmp_path / "a.dcm").exists()
    assert spool.head == data
    assert spool.size == 5000


@pytest.mark.parametrize("size", [5001, 300 * 1024])
def test_an_object_larger_than_what_is_kept_becomes_a_file(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    spool = SpoolFile(tmp_path / "a.dcm", keep_up_to=5000)
    write_in_pieces(spool, data, size)
    spool.flush()
    spool.close()
    assert spool.on_disk
    assert (tmp_path / "a.dcm").read_bytes() == data
    assert spool.head == data[:HEAD_BYTES]
