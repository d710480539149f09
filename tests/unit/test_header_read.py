"""A header parsed from the first bytes read equals one parsed from the whole file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from xvactor.dicom.part10 import dataset_offset, read_header, read_header_in
from xvactor.testing.datasets import make_dataset

HEAD = 65536


def written(tmp_path: Path, *, private_bytes: int, syntax: str) -> Path:
    ds = make_dataset(rows=64, columns=64)
    if private_bytes:
        ds.private_block(0x0009, "XVACTOR TEST", create=True).add_new(
            0x10, "OB", b"\x01" * private_bytes
        )
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "instance.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("private_bytes", [0, 60_000, 70_000, 200_000])
def test_head_parse_equals_file_parse_or_defers(
    tmp_path: Path, private_bytes: int, syntax: str
) -> None:
    path = written(tmp_path, private_bytes=private_bytes, syntax=syntax)
    data = path.read_bytes()
    with path.open("rb") as fp:
        offset = dataset_offset(fp)
    from_file = read_header(path, offset, syntax)
    from_head = read_header_in(data[:HEAD], offset, syntax, size=len(data))
    if offset + len(from_file.raw) > HEAD - 12:
        assert from_head is None  # the header runs past the head: read it from the file
    else:
        assert from_head is not None
        assert from_head.raw == from_file.raw
        assert from_head.dataset == from_file.dataset
