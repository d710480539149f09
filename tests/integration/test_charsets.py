"""Character sets: Latin-1 and UTF-8 indexed; anything else stored untouched, never refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from tests.integration.helpers import dataset_bytes, stored_path
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import run_tool
from xvactor.testing.node import NodeHandle

pytestmark = pytest.mark.dcmtk


# pydicom warns (by design) while parsing an unknown Specific Character Set term; the
# node logs that and stores the instance, which is what this test checks.
@pytest.mark.filterwarnings("ignore:Unknown encoding 'ISO_IR 999'")
@pytest.mark.parametrize(
    ("charset", "raw_name", "indexed"),
    [
        ("ISO_IR 100", "Müller^Jürgen".encode("latin-1"), "Müller^Jürgen"),
        ("ISO_IR 192", "Ærøskøbing^Zoë=山田^太郎".encode(), "Ærøskøbing^Zoë=山田^太郎"),
        ("ISO_IR 999", b"Unknown^Set\xe9", None),  # unknown term: stored, indexed best effort
        ("ISO_IR 100", b"Bad^Bytes\x81\x8d", None),  # bytes Latin-1 has no characters for
    ],
    ids=["latin1", "utf8", "unknown-charset", "undecodable"],
)
def test_any_character_set_is_stored_untouched(
    node: NodeHandle, tmp_path: Path, charset: str, raw_name: bytes, indexed: str | None
) -> None:
    ds = make_dataset()
    # pydicom refuses to write an unknown term: write ISO_IR 100, then patch the bytes.
    ds.SpecificCharacterSet = "ISO_IR 100" if charset == "ISO_IR 999" else charset
    ds.add_new(0x00100010, "PN", raw_name)  # raw bytes: written as they are
    source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "cs.dcm")
    if charset == "ISO_IR 999":
        data = source.read_bytes()
        assert data.count(b"ISO_IR 100") == 1
        source.write_bytes(data.replace(b"ISO_IR 100", b"ISO_IR 999"))
    result = run_tool("storescu", "-aec", node.ae_title, node.host, str(node.port), str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    stored = stored_path(node, ds)
    assert dataset_bytes(stored) == dataset_bytes(source)
    (name,) = node.catalog_rows("SELECT patient_name FROM patients")[0]
    if indexed is not None:
        assert name == indexed
    else:
        assert str(name).startswith(raw_name[:5].decode())
