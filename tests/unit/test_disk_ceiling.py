"""The ingest benchmark's disk ceiling (``benchmarks/disk_ceiling.py``) writes what it is
given and reports what it could not write."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from disk_ceiling import main, write_durably


@pytest.mark.parametrize("threads", [1, 3])
def test_every_payload_lands_in_its_own_file(tmp_path: Path, threads: int) -> None:
    payloads = [bytes([n]) * (1000 + n) for n in range(7)]
    got = write_durably(payloads, threads, tmp_path)
    assert got.files == 7 and not got.error and got.wall_s > 0
    written = sorted(p.read_bytes() for p in tmp_path.rglob("*.dcm"))
    assert written == sorted(payloads)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_writer_that_cannot_write_is_reported(tmp_path: Path) -> None:
    (tmp_path / "w0").write_bytes(b"a file where the writer's directory would be")
    got = write_durably([b"x", b"y"], 2, tmp_path)
    assert got.files == 1
    assert got.error.startswith("writer 0:")


def test_command_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--bytes", "4096", "--count", "4", "--threads", "1,2", "--repeat", "1"]
    assert main([*argv, "--dir", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["1", "2"]
    assert not list(tmp_path.iterdir())  # the files are removed
