"""Per-destination output encoding (conformance target, last section) on the wire."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP, run_tool

pytestmark = pytest.mark.dcmtk


def _send(tmp_path: Path, scp: StoreSCP, output: str, files: list[Path]) -> str:
    config = tmp_path / "client.toml"
    config.write_text(
        f"""
ae_title = "MODALITY"
data_dir = "{tmp_path / "data"}"

[[destinations]]
name = "archive"
ae_title = "{scp.ae_title}"
host = "127.0.0.1"
port = {scp.port}
output = {output}
"""
    )
    result = subprocess.run(
        [sys.executable, "-m", "xvactor", "store", "--to", "archive", "--config", str(config),
         *map(str, files)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("output", "syntax"),
    [
        ('{ transfer_syntax = "j2k-lossless" }', "1.2.840.10008.1.2.4.90"),
        ('{ transfer_syntax = "rle" }', "1.2.840.10008.1.2.5"),
        ("{ big_endian = true }", "1.2.840.10008.1.2.2"),
        ("{ explicit_vr = false }", "1.2.840.10008.1.2"),
    ],
)
def test_destination_receives_its_encoding_with_the_same_pixels(
    tmp_path: Path, output: str, syntax: str
) -> None:
    ds = make_dataset(rows=32, columns=32)
    source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "in.dcm")
    with StoreSCP(tmp_path / "scp") as scp:
        _send(tmp_path, scp, output, [source])
        (received,) = scp.received()
    # storescp (+B: bit preserving) writes what came over the wire, in that syntax.
    dumped = run_tool("dcmdump", "-Un", "+P", "0002,0010", str(received), check=True).stdout
    assert f"[{syntax}]" in dumped, dumped
    got = dcmread(received)
    assert got.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(got.pixel_array, ds.pixel_array)
