"""The Data Manager receive path against DCMTK's echoscu and storescu."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    RLELossless,
)

from tests.integration.helpers import dataset_bytes, stored_path
from xvactor.testing.datasets import (
    STORAGE_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    make_dataset,
    write_in_transfer_syntax,
)
from xvactor.testing.dcmtk import run_tool
from xvactor.testing.node import NodeHandle

pytestmark = pytest.mark.dcmtk

# storescu proposes uncompressed files as Explicit VR LE unless told otherwise; these flags
# make it propose the file's own syntax, so what arrives is what the file holds.
_PROPOSE = {
    ImplicitVRLittleEndian: ("-xi",),
    ExplicitVRLittleEndian: ("-xe",),
    ExplicitVRBigEndian: ("-xb",),
    RLELossless: ("-xr",),
    JPEGBaseline8Bit: ("-xy",),
    JPEG2000Lossless: ("-xv",),
    JPEG2000: ("-xw",),
}

# storescu has no flag for JPEG Lossless Process 14 (.57; -xs proposes SV1, .70): a profile.
_PROCESS_14_PROFILE = """
[[TransferSyntaxes]]
[P14]
TransferSyntax1 = 1.2.840.10008.1.2.4.57
[[PresentationContexts]]
[P14Contexts]
PresentationContext1 = 1.2.840.10008.5.1.4.1.1.2\\P14
[[Profiles]]
[P14]
PresentationContexts = P14Contexts
"""


def propose(ts_uid: str, tmp_path: Path) -> tuple[str, ...]:
    """storescu options that propose exactly ``ts_uid`` for a CT file."""
    if ts_uid == JPEGLossless:
        profile = tmp_path / "p14.cfg"
        profile.write_text(_PROCESS_14_PROFILE)
        return ("-xf", str(profile), "P14")
    return _PROPOSE[ts_uid]


def storescu(handle: NodeHandle, *files: Path, extra: tuple[str, ...] = ()) -> str:
    result = run_tool(
        "storescu",
        "-aec",
        handle.ae_title,
        *extra,
        handle.host,
        str(handle.port),
        *[str(f) for f in files],
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_echoscu_against_node(node: NodeHandle) -> None:
    result = run_tool("echoscu", "-aec", node.ae_title, node.host, str(node.port))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("ts_uid", TRANSFER_SYNTAXES, ids=lambda uid: uid.name)
def test_storescu_each_transfer_syntax_kept_bit_for_bit(
    node: NodeHandle, tmp_path: Path, ts_uid: pydicom.uid.UID
) -> None:
    bits = 8 if ts_uid == JPEGBaseline8Bit else 16
    ds = make_dataset(bits_allocated=bits, rows=32, columns=48)
    source = write_in_transfer_syntax(ds, ts_uid, tmp_path / "in.dcm")

    storescu(node, source, extra=propose(ts_uid, tmp_path))

    stored = stored_path(node, ds)
    assert stored.is_file()
    assert dataset_bytes(stored) == dataset_bytes(source)
    meta = pydicom.dcmread(stored, stop_before_pixels=True).file_meta
    assert meta.TransferSyntaxUID == ts_uid
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert meta.ImplementationClassUID == "1.2.840.114384"
    assert meta.SourceApplicationEntityTitle == "STORESCU"
    rows = node.catalog_rows(
        "SELECT transfer_syntax_uid, path, size FROM instances WHERE sop_instance_uid = ?",
        ds.SOPInstanceUID,
    )
    assert rows == [(ts_uid, str(stored.relative_to(node.data_dir)), stored.stat().st_size)]
    # DCMTK reads back what we wrote.
    dump = run_tool("dcmdump", "-M", str(stored))
    assert dump.returncode == 0, dump.stderr


def test_storescu_every_target_sop_class_in_one_association(
    node: NodeHandle, tmp_path: Path
) -> None:
    study = pydicom.uid.generate_uid()
    datasets = [
        make_dataset(sop_class_uid=sop.uid, study_uid=study, rows=16, columns=16)
        for sop in STORAGE_SOP_CLASSES
    ]
    files = [
        write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / f"{i}.dcm")
        for i, ds in enumerate(datasets)
    ]
    storescu(node, *files)

    rows = node.catalog_rows(
        "SELECT i.sop_instance_uid, i.sop_class_uid, se.modality FROM instances i "
        "JOIN series se USING (series_pk) JOIN studies st USING (study_pk) "
        "WHERE st.study_instance_uid = ?",
        study,
    )
    assert sorted(rows) == sorted(
        (ds.SOPInstanceUID, ds.SOPClassUID, ds.Modality) for ds in datasets
    )
    for ds in datasets:
        assert stored_path(node, ds).is_file()


def test_catalog_rows_at_every_level(node: NodeHandle, tmp_path: Path) -> None:
    ds = make_dataset(patient_name="Doe^Jane", patient_id="PID-42")
    ds.AccessionNumber = "ACC123"
    ds.StudyDescription = "Chest"
    ds.SeriesNumber = 7
    ds.InstanceNumber = 3
    storescu(node, write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "a.dcm"))

    assert node.catalog_rows("SELECT patient_id, patient_name FROM patients") == [
        ("PID-42", "Doe^Jane")
    ]
    assert node.catalog_rows(
        "SELECT study_instance_uid, accession_number, study_description, study_date FROM studies"
    ) == [(ds.StudyInstanceUID, "ACC123", "Chest", ds.StudyDate)]
    assert node.catalog_rows("SELECT series_instance_uid, modality, series_number FROM series") == [
        (ds.SeriesInstanceUID, "CT", "7")
    ]
    header = node.catalog_rows("SELECT instance_number, header FROM instances")
    assert header[0][0] == "3"
    # The whole header is kept, so any attribute can be read back from the catalog.
    assert bytes(header[0][1]).find(b"ACC123") > 0


def test_latin1_names_indexed_and_read_back_intact(node: NodeHandle, tmp_path: Path) -> None:
    ds = make_dataset(patient_name="Müller^Jürgen")
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "latin1.dcm")
    storescu(node, source)

    assert node.catalog_rows("SELECT patient_name FROM patients") == [("Müller^Jürgen",)]
    stored = stored_path(node, ds)
    assert b"M\xfcller^J\xfcrgen" in stored.read_bytes()
    assert str(pydicom.dcmread(stored).PatientName) == "Müller^Jürgen"


@pytest.mark.parametrize(
    "rows", [254, 256, 258, 724], ids=["under-stage", "about-stage", "over-stage", "1MB"]
)
def test_sizes_around_the_spools_staging_buffer_kept_bit_for_bit(
    node: NodeHandle, tmp_path: Path, rows: int
) -> None:
    """Objects from just under to several times the 256 KiB buffer written with O_DIRECT."""
    ds = make_dataset(rows=rows, columns=512, seed=rows)
    source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "in.dcm")
    storescu(node, source, extra=("-xe",))
    stored = stored_path(node, ds)
    assert dataset_bytes(stored) == dataset_bytes(source)
    size = stored.stat().st_size
    assert node.catalog_rows(
        "SELECT size FROM instances WHERE sop_instance_uid = ?", ds.SOPInstanceUID
    ) == [(size,)]
