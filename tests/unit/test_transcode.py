"""Transcoding between the eight transfer syntaxes (xvactor.transcode): pixels and attributes."""

from __future__ import annotations

import itertools

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    RLELossless,
)

from tests.unit.test_transcode_support import pixels, psnr, smooth
from xvactor.testing.datasets import make_dataset
from xvactor.transcode import ENCODABLE, TranscodeError, transcode
from xvactor.transcode.options import OutputEncoding

LOSSLESS = [uid for uid in ENCODABLE if uid not in (JPEGBaseline8Bit, JPEG2000)]
COMPRESSED_LOSSLESS = (RLELossless, JPEGLossless, JPEG2000Lossless)
# Lossy floors for the smooth test images at the default settings.
PSNR_FLOOR = {JPEGBaseline8Bit: 30.0, JPEG2000: 45.0}

IMAGES = {
    "mono8": {"bits_allocated": 8},
    "mono16": {"bits_allocated": 16, "bits_stored": 12},
    "mono16full": {"bits_allocated": 16, "bits_stored": 16},
    "signed16": {"bits_allocated": 16, "bits_stored": 12, "signed": True},
    "rgb8": {"bits_allocated": 8, "samples_per_pixel": 3},
    "frames16": {"bits_allocated": 16, "frames": 3},
}


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize(("first", "second"), list(itertools.product(LOSSLESS, LOSSLESS)))
def test_lossless_paths_are_pixel_exact(image: str, first: UID, second: UID) -> None:
    ds = smooth(40, 48, **IMAGES[image])  # type: ignore[arg-type]
    reference = ds.pixel_array
    there = transcode(ds, first)
    back = transcode(there, second)
    assert there.file_meta.TransferSyntaxUID == first
    assert back.file_meta.TransferSyntaxUID == second
    np.testing.assert_array_equal(pixels(back), reference)
    assert "LossyImageCompression" not in back


LOSSY_CASES = [
    *((image, JPEG2000) for image in ("mono8", "rgb8", "mono16", "signed16", "frames16")),
    ("mono8", JPEGBaseline8Bit),
    ("rgb8", JPEGBaseline8Bit),
]


@pytest.mark.parametrize(("image", "target"), LOSSY_CASES)
def test_lossy_paths_stay_above_the_psnr_floor(image: str, target: UID) -> None:
    ds = smooth(64, 64, **IMAGES[image])  # type: ignore[arg-type]
    lossy = transcode(ds, target)
    bits = int(ds.BitsStored)
    assert psnr(ds.pixel_array, pixels(lossy), bits) > PSNR_FLOOR[target]
    assert lossy.LossyImageCompression == "01"
    method = "ISO_10918_1" if target == JPEGBaseline8Bit else "ISO_15444_1"
    assert lossy.LossyImageCompressionMethod == method
    assert float(lossy.LossyImageCompressionRatio) > 1


def test_quality_changes_the_result() -> None:
    ds = smooth(64, 64, bits_allocated=8)
    low = transcode(ds, JPEGBaseline8Bit, OutputEncoding(quality=20))
    high = transcode(ds, JPEGBaseline8Bit, OutputEncoding(quality=98))
    assert len(low.PixelData) < len(high.PixelData)
    assert psnr(ds.pixel_array, pixels(low), 8) < psnr(ds.pixel_array, pixels(high), 8)
    j2k_low = transcode(smooth(64, 64, bits_allocated=16), JPEG2000, OutputEncoding(quality=35))
    assert float(j2k_low.LossyImageCompressionRatio) > 5


def test_colour_metadata_after_each_step() -> None:
    ds = smooth(32, 40, bits_allocated=8, samples_per_pixel=3)
    baseline = transcode(ds, JPEGBaseline8Bit)
    assert baseline.PhotometricInterpretation == "YBR_FULL_422"
    assert baseline.PlanarConfiguration == 0
    assert transcode(ds, JPEG2000Lossless).PhotometricInterpretation == "YBR_RCT"
    assert transcode(ds, JPEG2000).PhotometricInterpretation == "YBR_ICT"
    assert transcode(ds, RLELossless).PhotometricInterpretation == "RGB"
    assert transcode(ds, JPEGLossless).PhotometricInterpretation == "RGB"
    for compressed in (baseline, transcode(ds, JPEG2000Lossless)):
        decoded = transcode(compressed, ExplicitVRLittleEndian)
        assert decoded.PhotometricInterpretation == "RGB"
    # Decoding keeps the lossy history, and a second lossy step appends to it.
    again = transcode(baseline, JPEG2000)
    assert again.LossyImageCompression == "01"
    assert list(again.LossyImageCompressionMethod) == ["ISO_10918_1", "ISO_15444_1"]
    assert len(again.LossyImageCompressionRatio) == 2
    assert transcode(baseline, ImplicitVRLittleEndian).LossyImageCompression == "01"


def test_planar_configuration_1_source_is_read_by_plane() -> None:
    ds = smooth(16, 24, bits_allocated=8, samples_per_pixel=3)
    reference = ds.pixel_array
    ds.PixelData = np.ascontiguousarray(reference.transpose(2, 0, 1)).tobytes()
    ds.PlanarConfiguration = 1
    for target in COMPRESSED_LOSSLESS:
        out = transcode(ds, target)
        assert out.PlanarConfiguration == 0
        np.testing.assert_array_equal(pixels(out), reference)


def test_encapsulation_has_a_basic_offset_table_and_even_fragments() -> None:
    ds = make_dataset(rows=5, columns=7, bits_allocated=8, frames=4)  # 35 bytes a frame
    for target in COMPRESSED_LOSSLESS:
        out = transcode(ds, target)
        value = out.PixelData
        assert out["PixelData"].is_undefined_length
        offsets = parse_basic_offsets(value)
        assert len(offsets) == 4 and offsets[0] == 0
        frames = list(pydicom.encaps.generate_frames(value, number_of_frames=4))
        assert all(len(frame) % 2 == 0 for frame in frames)
        position = 8 + 4 * 4  # items start after the Basic Offset Table item
        for offset, frame in zip(offsets, frames, strict=True):
            assert value[position + offset : position + offset + 4] == b"\xfe\xff\x00\xe0"
            assert int.from_bytes(
                value[position + offset + 4 : position + offset + 8], "little"
            ) == len(frame)
        np.testing.assert_array_equal(pixels(out), ds.pixel_array)


def test_odd_native_pixel_data_is_padded() -> None:
    ds = make_dataset(rows=5, columns=7, bits_allocated=8)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for target in (ImplicitVRLittleEndian, ExplicitVRBigEndian):
        out = transcode(transcode(ds, RLELossless), target)
        assert len(out.PixelData) == 36
        np.testing.assert_array_equal(pixels(out), ds.pixel_array)


def test_big_endian_swaps_16_bit_pixels() -> None:
    ds = make_dataset(rows=4, columns=4, bits_allocated=16)
    big = transcode(ds, ExplicitVRBigEndian)
    assert big.PixelData == np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()


def test_independent_decoders_read_what_we_write() -> None:
    """pydicom's own RLE and pylibjpeg-openjpeg JPEG 2000 decoders agree with the source."""
    for image in ("mono16", "rgb8", "signed16"):
        ds = smooth(40, 40, **IMAGES[image])  # type: ignore[arg-type]
        for target in (RLELossless, JPEG2000Lossless):
            out = transcode(ds, target)
            np.testing.assert_array_equal(out.pixel_array, ds.pixel_array)


@pytest.mark.parametrize(
    ("image", "target", "words"),
    [
        ({"bits_allocated": 16}, JPEGBaseline8Bit, "8 bit samples only"),
        ({"bits_allocated": 8, "signed": True}, JPEGBaseline8Bit, "signed"),
    ],
)
def test_refusals_for_bit_depths(image: dict[str, object], target: UID, words: str) -> None:
    with pytest.raises(TranscodeError, match=words) as caught:
        transcode(smooth(16, 16, **image), target)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("target", COMPRESSED_LOSSLESS)
def test_refuses_to_claim_lossless_for_lossy_pixels(target: UID) -> None:
    lossy = transcode(smooth(32, 32), JPEGBaseline8Bit)
    with pytest.raises(TranscodeError, match="would claim lossless"):
        transcode(lossy, target)
    marked = smooth(32, 32)
    marked.LossyImageCompression = "01"
    with pytest.raises(TranscodeError, match="would claim lossless"):
        transcode(marked, target)


def test_other_refusals() -> None:
    palette = smooth(16, 16)
    palette.PhotometricInterpretation = "PALETTE COLOR"
    with pytest.raises(TranscodeError, match="PALETTE COLOR"):
        transcode(palette, JPEG2000)
    one_bit = make_dataset(rows=8, columns=8, bits_allocated=8)
    one_bit.BitsAllocated = one_bit.BitsStored = 1
    one_bit.HighBit = 0
    one_bit.PixelData = b"\x55" * 8
    with pytest.raises(TranscodeError, match="Bits Allocated 1"):
        transcode(one_bit, RLELossless)
    assert transcode(one_bit, ExplicitVRBigEndian).PixelData == b"\x55" * 8
    with pytest.raises(TranscodeError, match="unknown or unsupported"):
        transcode(smooth(8, 8), "1.2.840.10008.1.2.4.80")
    short = smooth(8, 8)
    short.PixelData = short.PixelData[:-2]
    with pytest.raises(TranscodeError, match="Pixel Data has 62 bytes"):
        transcode(short, RLELossless)


def test_corrupt_compressed_frame_is_a_clear_error() -> None:
    ds = transcode(make_dataset(rows=32, columns=32, frames=2), JPEG2000Lossless)
    value = bytearray(ds.PixelData)
    value[60:400] = b"\x00" * 340
    ds.PixelData = bytes(value)
    with pytest.raises(TranscodeError, match="frame 1 of 2") as caught:
        transcode(ds, ExplicitVRLittleEndian)
    assert "\n" not in str(caught.value)


def test_dataset_without_pixel_data_converts() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "Doe^Jane"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = transcode(ds, JPEG2000Lossless)
    assert out.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert out.PatientName == "Doe^Jane"


def test_source_dataset_is_not_changed() -> None:
    ds = smooth(16, 16, samples_per_pixel=3)
    before = ds.PhotometricInterpretation, ds.PixelData
    transcode(ds, JPEGBaseline8Bit)
    assert (ds.PhotometricInterpretation, ds.PixelData) == before
    assert "LossyImageCompressionRatio" not in ds


def test_j2k_lossy_default_compresses_more_than_lossless() -> None:
    ds = smooth(128, 128, bits_allocated=16, bits_stored=12)
    lossless = transcode(ds, JPEG2000Lossless)
    lossy = transcode(ds, JPEG2000)
    assert len(lossy.PixelData) * 2 < len(lossless.PixelData)
    quality = psnr(ds.pixel_array, pixels(lossy), 12)
    assert PSNR_FLOOR[JPEG2000] < quality < 80
