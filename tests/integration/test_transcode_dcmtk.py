"""Transcoding cross-checked with DCMTK, an independent implementation.

DCMTK's dcmdrle, dcmdjpeg and dcmconv decode what xvactor encodes and agree pixel for pixel
on lossless syntaxes; xvactor decodes what dcmcrle, dcmcjpeg and dcmconv encode, likewise;
dcmdump reads each output encoding option back from the written bytes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)

from tests.unit.test_transcode_support import psnr, smooth
from xvactor.testing.dcmtk import run_tool
from xvactor.transcode import OutputEncoding, convert_file, transcode

pytestmark = pytest.mark.dcmtk

IMAGES = {
    "mono8": {"bits_allocated": 8},
    "mono12": {"bits_allocated": 16, "bits_stored": 12},
    "mono16": {"bits_allocated": 16, "bits_stored": 16},
    "signed12": {"bits_allocated": 16, "bits_stored": 12, "signed": True},
    "rgb8": {"bits_allocated": 8, "samples_per_pixel": 3},
    "frames12": {"bits_allocated": 16, "bits_stored": 12, "frames": 3},
}
# Our encoding -> the DCMTK tool that decodes it to Explicit VR Little Endian.
DCMTK_DECODERS = {
    RLELossless: ("dcmdrle", "+te"),
    JPEGLossless: ("dcmdjpeg", "+te"),
    ExplicitVRBigEndian: ("dcmconv", "+te"),
    ImplicitVRLittleEndian: ("dcmconv", "+te"),
}
# DCMTK's encoder options -> the syntax they produce (+un: keep the SOP Instance UID).
DCMTK_ENCODERS: dict[tuple[str, ...], UID] = {
    ("dcmcrle", "+un"): RLELossless,
    ("dcmcjpeg", "+el", "+un"): JPEGLossless,
    ("dcmcjpeg", "+un"): JPEGLosslessSV1,
    ("dcmconv", "+tb"): ExplicitVRBigEndian,
    ("dcmconv", "+ti"): ImplicitVRLittleEndian,
}


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def read_pixels(path: Path) -> np.ndarray:
    """Pixels of a file DCMTK left uncompressed (pydicom's native reader)."""
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    return ds.pixel_array


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("target", list(DCMTK_DECODERS))
def test_dcmtk_decodes_what_we_encode(tmp_path: Path, image: str, target: UID) -> None:
    ds = smooth(48, 40, **IMAGES[image])  # type: ignore[arg-type]
    ours = tmp_path / "ours.dcm"
    assert convert_file(save(ds, tmp_path / "in.dcm"), ours, target) == target
    tool, *options = DCMTK_DECODERS[target]
    run_tool(tool, *options, ours, tmp_path / "dcmtk.dcm", check=True)
    np.testing.assert_array_equal(read_pixels(tmp_path / "dcmtk.dcm"), ds.pixel_array)


@pytest.mark.parametrize("image", ["mono8", "rgb8"])
def test_dcmtk_decodes_our_jpeg_baseline_like_we_do(tmp_path: Path, image: str) -> None:
    ds = smooth(64, 64, **IMAGES[image])  # type: ignore[arg-type]
    ours = tmp_path / "ours.dcm"
    convert_file(save(ds, tmp_path / "in.dcm"), ours, JPEGBaseline8Bit)
    header = pydicom.dcmread(ours, stop_before_pixels=True)
    if image == "rgb8":
        assert header.PhotometricInterpretation == "YBR_FULL_422"
    run_tool("dcmdjpeg", "+te", ours, tmp_path / "dcmtk.dcm", check=True)
    theirs = read_pixels(tmp_path / "dcmtk.dcm")
    mine = transcode(pydicom.dcmread(ours), ExplicitVRLittleEndian).pixel_array
    assert np.abs(theirs.astype(int) - mine.astype(int)).max() <= 2  # IDCT/upsampling
    assert psnr(ds.pixel_array, theirs, 8) > 30


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("encoder", list(DCMTK_ENCODERS))
def test_we_decode_what_dcmtk_encodes(tmp_path: Path, image: str, encoder: tuple[str, ...]) -> None:
    ds = smooth(48, 40, **IMAGES[image])  # type: ignore[arg-type]
    theirs = tmp_path / "dcmtk.dcm"
    tool, *options = encoder
    run_tool(tool, *options, save(ds, tmp_path / "in.dcm"), theirs, check=True)
    assert pydicom.dcmread(theirs).file_meta.TransferSyntaxUID == DCMTK_ENCODERS[encoder]
    convert_file(theirs, tmp_path / "ours.dcm", ExplicitVRLittleEndian)
    np.testing.assert_array_equal(read_pixels(tmp_path / "ours.dcm"), ds.pixel_array)


@pytest.mark.parametrize(
    ("image", "options", "syntax", "floor"),
    [
        ("mono8", ("+eb",), JPEGBaseline8Bit, 30),
        ("rgb8", ("+eb",), JPEGBaseline8Bit, 28),
        ("mono12", ("+ee",), JPEGExtended12Bit, 50),
    ],
)
def test_we_decode_dcmtk_lossy_jpeg(
    tmp_path: Path, image: str, options: tuple[str, ...], syntax: UID, floor: float
) -> None:
    ds = smooth(64, 64, **IMAGES[image])  # type: ignore[arg-type]
    theirs = tmp_path / "dcmtk.dcm"
    run_tool("dcmcjpeg", *options, "+un", save(ds, tmp_path / "in.dcm"), theirs, check=True)
    assert pydicom.dcmread(theirs).file_meta.TransferSyntaxUID == syntax
    convert_file(theirs, tmp_path / "ours.dcm", ExplicitVRLittleEndian)
    run_tool("dcmdjpeg", "+te", theirs, tmp_path / "reference.dcm", check=True)
    mine, reference = read_pixels(tmp_path / "ours.dcm"), read_pixels(tmp_path / "reference.dcm")
    assert np.abs(mine.astype(int) - reference.astype(int)).max() <= 2
    assert psnr(ds.pixel_array, mine, int(ds.BitsStored)) > floor
    ours = pydicom.dcmread(tmp_path / "ours.dcm", stop_before_pixels=True)
    assert ours.LossyImageCompression == "01"
    if image == "rgb8":
        assert ours.PhotometricInterpretation == "RGB"


def dump(path: Path) -> str:
    return run_tool("dcmdump", "+L", path, check=True).stdout


def test_dcmdump_sees_each_output_option(tmp_path: Path) -> None:
    ds = smooth(16, 16, bits_allocated=16)
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D1100", "SRT", "Head"
    ds.AnatomicRegionSequence = [item]
    source = save(ds, tmp_path / "in.dcm")

    def convert(**options: object) -> str:
        out = tmp_path / "out.dcm"
        convert_file(source, out, output=OutputEncoding(**options))  # type: ignore[arg-type]
        text = dump(out)
        assert "E:" not in text and "W:" not in text, text
        return text

    plain = convert(transfer_syntax="explicit-le")
    assert (
        "LittleEndianExplicit" in plain and "GroupLength" not in plain.split("# Dicom-Data-Set")[1]
    )
    assert re.search(r"\(0008,2218\) SQ \(Sequence with explicit length", plain)
    assert "(no value available)" in plain  # e.g. AccessionNumber, kept by default
    grouped = convert(group_lengths=True).split("# Dicom-Data-Set")[1]
    for group in ("0008", "0010", "0020", "0028", "7fe0"):
        assert re.search(rf"\({group},0000\) UL \d+ ", grouped), group
    undefined = convert(undefined_lengths=True)
    assert re.search(r"\(0008,2218\) SQ \(Sequence with undefined length", undefined)
    assert "(fffe,e00d)" in undefined and "(fffe,e0dd)" in undefined
    assert "(no value available)" not in convert(drop_empty=True).split("# Dicom-Data-Set")[1]
    assert "BigEndianExplicit" in convert(big_endian=True)
    assert "LittleEndianImplicit" in convert(explicit_vr=False)


@pytest.mark.parametrize("target", ["explicit-le", "implicit-le", "explicit-be", "jpeg-lossless"])
@pytest.mark.parametrize("undefined_lengths", [False, True])
def test_group_lengths_match_dcmtks_own(
    tmp_path: Path, target: str, undefined_lengths: bool
) -> None:
    """DCMTK recomputes every group length (dcmconv +g) and finds the values we wrote."""
    ds = smooth(16, 16, bits_allocated=16)
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D1100", "SRT", "Head"
    ds.AnatomicRegionSequence = [item]
    ours = tmp_path / "ours.dcm"
    output = OutputEncoding(
        transfer_syntax=target, group_lengths=True, undefined_lengths=undefined_lengths
    )
    convert_file(save(ds, tmp_path / "in.dcm"), ours, output=output)
    lengths = "-e" if undefined_lengths else "+e"
    run_tool("dcmconv", "+g", lengths, ours, tmp_path / "dcmtk.dcm", check=True)

    def group_lengths(path: Path) -> list[str]:
        pattern = r"^\((?!0002)[0-9a-f]{4},0000\) UL \d+"
        return re.findall(pattern, dump(path), flags=re.MULTILINE)

    mine = group_lengths(ours)
    assert len(mine) >= 5
    assert mine == group_lengths(tmp_path / "dcmtk.dcm")
