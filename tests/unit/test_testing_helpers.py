"""The shipped test helpers: synthetic datasets in every transfer syntax, DCMTK, ports."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)

from xvactor.testing import dcmtk
from xvactor.testing.datasets import (
    LOSSLESS_TRANSFER_SYNTAXES,
    SIZES,
    STORAGE_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    make_corpus,
    make_dataset,
    make_sized,
    modality_for,
    write_in_transfer_syntax,
)
from xvactor.testing.dcmtk import DcmtkError, StoreSCP, dcmtk_env, require_tool, run_tool
from xvactor.testing.net import (
    LOOPBACK,
    free_port,
    port_accepts,
    wait_for_port,
    wait_until_closed,
)

LATIN1_NAME = "Müller^Jürgen"
# DCMTK decoders, for syntaxes pydicom cannot decode without pylibjpeg-libjpeg.
DCMTK_DECODERS = {JPEGBaseline8Bit: "dcmdjpeg", JPEGLossless: "dcmdjpeg"}


def _source_for(ts_uid: UID, samples: int) -> pydicom.Dataset:
    bits = 8 if ts_uid == JPEGBaseline8Bit or samples == 3 else 16
    return make_dataset(bits_allocated=bits, samples_per_pixel=samples, frames=2, seed=7)


def _dump(*args: str | Path) -> str:
    result = run_tool("dcmdump", "-Un", *args, check=True)
    assert result.stderr == ""
    return result.stdout


def _decoded(path: Path, ts_uid: UID, tmp_path: Path) -> np.ndarray:
    if ts_uid in DCMTK_DECODERS and not (
        ts_uid == JPEGLossless and get_decoder(JPEGLossless).is_available
    ):
        plain = tmp_path / f"decoded-{path.name}"
        run_tool(DCMTK_DECODERS[ts_uid], path, plain, check=True)
        path = plain
    arr: np.ndarray = pydicom.dcmread(path).pixel_array
    return arr


# -- transfer syntaxes -----------------------------------------------------------------


def test_the_eight_transfer_syntaxes_of_the_target() -> None:
    assert len(TRANSFER_SYNTAXES) == 8
    assert JPEGLossless == "1.2.840.10008.1.2.4.57"
    assert JPEGLosslessSV1 not in TRANSFER_SYNTAXES
    assert {JPEGBaseline8Bit, JPEG2000}.isdisjoint(LOSSLESS_TRANSFER_SYNTAXES)
    assert len(LOSSLESS_TRANSFER_SYNTAXES) == 6


@pytest.mark.dcmtk
@pytest.mark.parametrize("samples", [1, 3], ids=["mono", "rgb"])
@pytest.mark.parametrize("ts_uid", TRANSFER_SYNTAXES, ids=lambda uid: uid.keyword)
def test_write_in_transfer_syntax_is_read_by_dcmtk_and_pydicom(
    ts_uid: UID, samples: int, tmp_path: Path
) -> None:
    ds = _source_for(ts_uid, samples)
    path = write_in_transfer_syntax(ds, ts_uid, tmp_path / "out.dcm")

    dump = _dump(path)
    assert f"(0002,0010) UI [{ts_uid}]" in dump
    assert "(7fe0,0010)" in dump
    read = pydicom.dcmread(path)
    assert read.file_meta.TransferSyntaxUID == ts_uid
    assert read.SOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # source untouched

    decoded = _decoded(path, ts_uid, tmp_path)
    assert decoded.shape == ds.pixel_array.shape
    if ts_uid in LOSSLESS_TRANSFER_SYNTAXES:
        np.testing.assert_array_equal(decoded, ds.pixel_array)
    else:
        assert read.LossyImageCompression == "01"


@pytest.mark.dcmtk
def test_big_endian_pixels_are_byte_swapped(tmp_path: Path) -> None:
    ds = make_dataset(rows=4, columns=4, seed=3)
    path = write_in_transfer_syntax(ds, ExplicitVRBigEndian, tmp_path / "be.dcm")
    raw = pydicom.dcmread(path).PixelData
    assert raw == ds.pixel_array.astype(">u2").tobytes()


@pytest.mark.dcmtk
def test_jpeg_lossless_is_process_14_not_sv1(tmp_path: Path) -> None:
    path = write_in_transfer_syntax(make_dataset(), JPEGLossless, tmp_path / "p14.dcm")
    assert "selection value 6" in pydicom.dcmread(path).DerivationDescription


@pytest.mark.parametrize(
    ("kwargs", "ts_uid", "match"),
    [
        ({"bits_allocated": 16}, JPEGBaseline8Bit, "8 bit"),
        ({"rows": 16, "columns": 64}, JPEG2000Lossless, "32 x 32"),
        ({"rows": 64, "columns": 31}, JPEG2000, "32 x 32"),
        ({}, UID("1.2.840.10008.1.2.4.70"), "unsupported transfer syntax"),
    ],
)
def test_write_rejects_what_the_syntax_cannot_hold(
    kwargs: dict[str, Any], ts_uid: UID, match: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=match):
        write_in_transfer_syntax(make_dataset(**kwargs), ts_uid, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


@pytest.mark.dcmtk
def test_rewriting_a_compressed_dataset_decompresses_it_first(tmp_path: Path) -> None:
    ds = make_dataset()
    j2k = pydicom.dcmread(write_in_transfer_syntax(ds, JPEG2000Lossless, tmp_path / "a.dcm"))
    path = write_in_transfer_syntax(j2k, RLELossless, tmp_path / "b.dcm")
    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, ds.pixel_array)


# -- datasets --------------------------------------------------------------------------


def test_storage_sop_classes_match_the_conformance_table() -> None:
    uids = [sop.uid for sop in STORAGE_SOP_CLASSES]
    assert len(set(uids)) == len(uids) == 19
    assert "1.2.840.10008.5.1.4.1.1.12.1" in uids  # not the source's 1.2.840.10008.5.1.5...
    for sop in STORAGE_SOP_CLASSES:
        assert sop.name == sop.uid.name
    assert modality_for("1.2.840.10008.5.1.4.1.1.7") == "OT"
    assert modality_for("1.2.840.10008.5.1.4.1.1.77.1.4") == "XC"
    with pytest.raises(ValueError, match="modality="):
        modality_for("1.2.3")


@pytest.mark.dcmtk
def test_every_sop_class_in_every_syntax_is_accepted_by_dcmtk(tmp_path: Path) -> None:
    paths = make_corpus(tmp_path / "corpus")
    assert len(paths) == len(STORAGE_SOP_CLASSES) * len(TRANSFER_SYNTAXES)
    dump = _dump(*paths)
    assert dump.count("# Dicom-File-Format") == len(paths)
    study_uids = {pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID for path in paths}
    assert len(study_uids) == 1
    for path, sop in zip(paths[:: len(TRANSFER_SYNTAXES)], STORAGE_SOP_CLASSES, strict=True):
        read = pydicom.dcmread(path, stop_before_pixels=True)
        assert (read.SOPClassUID, read.Modality) == (sop.uid, sop.modality)


def test_make_dataset_is_deterministic_but_for_its_uids() -> None:
    a, b = make_dataset(seed=1), make_dataset(seed=1)
    assert a.PixelData == b.PixelData
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert make_dataset(seed=2).PixelData != a.PixelData
    assert a.pixel_array.max() < 1 << a.BitsStored


def test_make_dataset_geometry_and_uids() -> None:
    ds = make_dataset(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.12.1",
        rows=40,
        columns=50,
        bits_allocated=8,
        samples_per_pixel=3,
        frames=3,
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_instance_uid="1.2.3.4.5",
    )
    assert ds.pixel_array.shape == (3, 40, 50, 3)
    assert (ds.PhotometricInterpretation, ds.NumberOfFrames, ds.Modality) == ("RGB", 3, "XA")
    assert ds.FrameIncrementPointer == 0x00181063
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3", "1.2.3.4")
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"
    assert make_dataset(sop_class_uid=CTImageStorage, modality="PX").Modality == "PX"
    processing = make_dataset(sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1.1")
    assert processing.PresentationIntentType == "FOR PROCESSING"
    with pytest.raises(ValueError, match="BitsAllocated"):
        make_dataset(bits_allocated=12)


def test_sizes() -> None:
    tiny, ct = make_sized("tiny"), make_sized("ct", sop_class_uid="1.2.840.10008.5.1.4.1.1.4")
    assert len(tiny.PixelData) == 64 * 64 == SIZES["tiny"].rows * SIZES["tiny"].columns
    assert (ct.Rows, ct.Columns, ct.BitsAllocated, ct.Modality) == (512, 512, 16, "MR")
    assert len(ct.PixelData) == 512 * 512 * 2
    assert SIZES["dx"] == (3000, 3000, 16)
    with pytest.raises(ValueError, match="tiny, ct, dx"):
        make_sized("huge")


@pytest.mark.dcmtk
def test_latin1_name_round_trips(tmp_path: Path) -> None:
    ds = make_dataset(patient_name=LATIN1_NAME)
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    path = write_in_transfer_syntax(ds, ImplicitVRLittleEndian, tmp_path / "latin1.dcm")
    assert LATIN1_NAME.encode("latin-1") in path.read_bytes()
    assert pydicom.dcmread(path).PatientName == LATIN1_NAME
    assert f"[{LATIN1_NAME}]" in _dump("+U8", path)


def test_character_set_rules() -> None:
    assert "SpecificCharacterSet" not in make_dataset()
    assert make_dataset(character_set="ISO_IR 100").SpecificCharacterSet == "ISO_IR 100"
    assert make_dataset(patient_name="山田^太郎", character_set="ISO_IR 192").PatientName
    with pytest.raises(ValueError, match="not Latin-1"):
        make_dataset(patient_name="山田^太郎")


# -- DCMTK -----------------------------------------------------------------------------


@pytest.mark.dcmtk
def test_require_tool_finds_dcmtk_not_pynetdicom_apps() -> None:
    for name in ("storescp", "echoscu", "storescu"):
        path = Path(require_tool(name))
        assert path.is_absolute()
        assert "dcmtk" in run_tool(name, "--version").stdout.lower()


def test_require_tool_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dcmtk, "_found", {})
    monkeypatch.setenv(dcmtk.DCMTK_BIN_ENV, str(tmp_path))
    with pytest.raises(RuntimeError, match="DCMTK tool 'dcmdump' not found: install Debian"):
        require_tool("dcmdump")


def test_dcmtk_env_always_sets_tcp_nodelay() -> None:
    env = dcmtk_env({"TCP_NODELAY": "0", "DCMDICTPATH": "/x"})
    assert (env["TCP_NODELAY"], env["DCMDICTPATH"]) == ("1", "/x")
    assert "PATH" in env


@pytest.mark.dcmtk
def test_run_tool_check_raises_with_the_tools_message(tmp_path: Path) -> None:
    assert run_tool("dcmdump", tmp_path / "missing.dcm").returncode != 0
    with pytest.raises(DcmtkError, match=r"missing\.dcm") as info:
        run_tool("dcmdump", tmp_path / "missing.dcm", check=True)
    assert info.value.result.returncode != 0


@pytest.mark.dcmtk
@pytest.mark.parametrize("fork", [False, True], ids=["single", "fork"])
def test_storescp_answers_echo_and_stores(fork: bool, tmp_path: Path) -> None:
    ds = make_dataset()
    sent = write_in_transfer_syntax(ds, RLELossless, tmp_path / "sent.dcm")
    with StoreSCP(tmp_path / "in", ae_title="ARCHIVE", fork=fork) as scp:
        assert scp.running
        address = (scp.host, str(scp.port))
        run_tool("echoscu", "-aec", scp.ae_title, *address, check=True)
        run_tool("storescu", "-xr", "-aec", scp.ae_title, *address, sent, check=True)
        [received] = scp.received()
    assert not scp.running
    wait_until_closed(LOOPBACK, scp.port, timeout=5)
    read = pydicom.dcmread(received)
    assert read.file_meta.TransferSyntaxUID == RLELossless  # +B: as sent
    np.testing.assert_array_equal(read.pixel_array, ds.pixel_array)


@pytest.mark.dcmtk
def test_storescp_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        # Bound, not listening: storescp (on all interfaces) cannot bind it, and a probe
        # connection is refused rather than accepted by someone else.
        taken.bind(("0.0.0.0", 0))
        scp = StoreSCP(tmp_path, port=taken.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="already in use"):
                scp.start()
        finally:
            scp.stop()
    assert not scp.running
    assert "already in use" in scp.output()


# -- ports -----------------------------------------------------------------------------


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))


def test_wait_for_port_returns_once_listening() -> None:
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen()
        port = server.getsockname()[1]
        wait_for_port(LOOPBACK, port, timeout=2)
        assert port_accepts(LOOPBACK, port)
    wait_until_closed(LOOPBACK, port, timeout=2)


def test_wait_for_port_times_out_with_a_clear_message() -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=rf"127\.0\.0\.1:{port} within 0\.2 s"):
        wait_for_port(LOOPBACK, port, timeout=0.2)


def test_wait_for_port_stops_when_check_raises() -> None:
    def server_died() -> None:
        raise RuntimeError("server exited")

    with pytest.raises(RuntimeError, match="server exited"):
        wait_for_port(LOOPBACK, free_port(), timeout=5, check=server_died)
