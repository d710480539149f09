"""Output encoding options, file conversion, encode_for and the convert verb."""

from __future__ import annotations

import argparse
import io
import tracemalloc
from pathlib import Path

import msgspec
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
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

from tests.unit.test_transcode_support import pixels, smooth
from xvactor.cli_convert import add_parser, run
from xvactor.testing.datasets import make_dataset
from xvactor.transcode import (
    OutputEncoding,
    TranscodeError,
    choose_transfer_syntax,
    convert,
    convert_file,
    encode_for,
    resolve,
    transcode,
)


def with_sequences(ds: Dataset) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D1100", "SRT", "Head"
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3"
    item.ReferencedImageSequence = Sequence([inner])
    ds.AnatomicRegionSequence = Sequence([item])
    ds.PatientComments = ""
    ds.RedPaletteColorLookupTableData = b"\x01\x02\x03\x04"
    return ds


def written(ds: Dataset, output: OutputEncoding) -> bytes:
    buffer = io.BytesIO()
    convert(ds, output=output).write(buffer)
    return buffer.getvalue()


def test_names_and_uids_resolve() -> None:
    assert resolve("j2k-lossless") == JPEG2000Lossless == resolve("JPEG2000Lossless")
    assert resolve(" 1.2.840.10008.1.2.4.57 ") == JPEGLossless
    assert resolve("Explicit_BE") == ExplicitVRBigEndian
    assert resolve("big-endian") == ExplicitVRBigEndian
    for bad in ("jpeg-ls", "1.2.840.10008.1.2.4.70", ""):
        with pytest.raises(TranscodeError, match="unknown or unsupported"):
            resolve(bad)


def test_output_encoding_decodes_from_config_and_checks_itself() -> None:
    table = {"transfer_syntax": "rle", "group_lengths": True, "quality": 80}
    output = msgspec.convert(table, OutputEncoding)
    assert output.target_for(ExplicitVRLittleEndian) == RLELossless
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"compression": "jpeg"}, OutputEncoding)
    for bad, words in (
        ({"transfer_syntax": "jpeg2000", "big_endian": True}, "always Explicit VR Little"),
        ({"explicit_vr": False, "big_endian": True}, "no Implicit VR Big Endian"),
        ({"quality": 0}, "quality must be 1-100"),
        ({"transfer_syntax": "mpeg2"}, "unknown or unsupported"),
    ):
        with pytest.raises(msgspec.ValidationError, match=words):
            msgspec.convert(bad, OutputEncoding)
    with pytest.raises(AttributeError):
        output.quality = 1  # type: ignore[misc]


def test_target_for_follows_the_native_switches() -> None:
    assert OutputEncoding().target_for(JPEGLossless) == JPEGLossless
    assert OutputEncoding(big_endian=True).target_for(JPEGLossless) == ExplicitVRBigEndian
    assert OutputEncoding(explicit_vr=False).target_for(RLELossless) == ImplicitVRLittleEndian
    keep = OutputEncoding(explicit_vr=True)
    assert keep.target_for(ImplicitVRLittleEndian) == ExplicitVRLittleEndian
    assert keep.target_for(ExplicitVRBigEndian) == ExplicitVRBigEndian
    forced = OutputEncoding(transfer_syntax="explicit-le", big_endian=True)
    assert forced.target_for(RLELossless) == ExplicitVRBigEndian


@pytest.mark.parametrize(
    "target", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless]
)
@pytest.mark.parametrize("group_lengths", [False, True])
@pytest.mark.parametrize("undefined_lengths", [False, True])
@pytest.mark.parametrize("drop_empty", [False, True])
def test_every_option_combination_reads_back(
    target: str, group_lengths: bool, undefined_lengths: bool, drop_empty: bool
) -> None:
    ds = with_sequences(make_dataset(rows=8, columns=8))
    ds.add_new((0x0008, 0x0000), "UL", 1234)  # a source's group length is never copied
    output = OutputEncoding(
        transfer_syntax=target,
        group_lengths=group_lengths,
        undefined_lengths=undefined_lengths,
        drop_empty=drop_empty,
    )
    raw = written(ds, output)
    back = pydicom.dcmread(io.BytesIO(raw))
    assert back.file_meta.TransferSyntaxUID == target
    assert back.PatientName == ds.PatientName
    item = back.AnatomicRegionSequence[0]
    assert item.ReferencedImageSequence[0].ReferencedSOPInstanceUID == "1.2.3"
    assert back["AnatomicRegionSequence"].is_undefined_length == undefined_lengths
    assert item.is_undefined_length_sequence_item == undefined_lengths
    assert ("PatientComments" in back) != drop_empty
    assert ("ReferringPhysicianName" in back) != drop_empty
    group = back.get((0x0008, 0x0000))
    assert (group is not None) == group_lengths
    if group_lengths:  # (0008,0000) counts the bytes up to (0010,0000), an 8-byte element
        start = back[0x00080000].file_tell + 4
        assert group.value == back[0x00100000].file_tell - 8 - start
        assert 0x00200000 in back and 0x7FE00000 in back
    if target != ExplicitVRBigEndian:
        assert back.RedPaletteColorLookupTableData == b"\x01\x02\x03\x04"
    np.testing.assert_array_equal(pixels(back), ds.pixel_array)


def test_big_endian_swaps_other_word_values_too() -> None:
    ds = with_sequences(make_dataset(rows=4, columns=4))
    back = pydicom.dcmread(io.BytesIO(written(ds, OutputEncoding(big_endian=True))))
    assert (
        back.RedPaletteColorLookupTableData == b"\x02\x01\x04\x03"
    )  # raw bytes in the file's byte order
    again = pydicom.dcmread(
        io.BytesIO(written(back, OutputEncoding(transfer_syntax="explicit-le")))
    )
    assert again.RedPaletteColorLookupTableData == b"\x01\x02\x03\x04"
    np.testing.assert_array_equal(again.pixel_array, ds.pixel_array)


def test_convert_file_streams_a_multi_frame_object(tmp_path: Path) -> None:
    """Frames are decoded one at a time: 40 frames of 128 KiB never sit in memory at once.

    Compressed frames wait in a spool (memory up to 16 MiB, then a temporary file) until
    the Basic Offset Table can be written, so encoding may hold the compressed size.
    """
    ds = make_dataset(rows=256, columns=256, bits_allocated=16, frames=40)
    ramp = np.arange(256 * 256, dtype="<u2").reshape(256, 256) % 4096
    ds.PixelData = np.stack([(ramp + n) % 4096 for n in range(40)]).astype("<u2").tobytes()
    source = tmp_path / "multi.dcm"
    ds.save_as(source, enforce_file_format=True)
    frame = 256 * 256 * 2
    compressed = tmp_path / "multi-j2k.dcm"
    back = tmp_path / "back.dcm"

    def peak_of(src: Path, dst: Path, target: str) -> int:
        tracemalloc.start()
        try:
            assert convert_file(src, dst, target) == target
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    encoding_peak = peak_of(source, compressed, JPEG2000Lossless)
    assert encoding_peak < compressed.stat().st_size + 8 * frame
    decoding_peak = peak_of(compressed, back, ExplicitVRLittleEndian)
    assert decoding_peak < compressed.stat().st_size + 8 * frame
    assert max(encoding_peak, decoding_peak) < 40 * frame / 4
    result = pydicom.dcmread(back)
    assert result.NumberOfFrames == 40
    np.testing.assert_array_equal(result.pixel_array, ds.pixel_array)


def test_convert_file_failures_leave_nothing(tmp_path: Path) -> None:
    source = tmp_path / "ct.dcm"
    make_dataset(rows=8, columns=8).save_as(source, enforce_file_format=True)
    with pytest.raises(TranscodeError, match="8 bit samples only"):
        convert_file(source, tmp_path / "out.dcm", JPEGBaseline8Bit)
    with pytest.raises(TranscodeError, match="cannot read"):
        convert_file(tmp_path / "missing.dcm", tmp_path / "out.dcm", RLELossless)
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(TranscodeError, match="cannot read"):
        convert_file(tmp_path / "junk.dcm", tmp_path / "out.dcm", RLELossless)
    with pytest.raises(TranscodeError, match="cannot write"):
        convert_file(source, tmp_path / "no" / "dir" / "out.dcm", RLELossless)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ct.dcm", "junk.dcm"]


def test_choose_transfer_syntax_prefers_stored_then_uncompressed_then_lossless() -> None:
    j2k = transcode(make_dataset(rows=32, columns=32), JPEG2000Lossless)
    everything = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless]
    assert choose_transfer_syntax(j2k, everything) == JPEG2000Lossless
    assert choose_transfer_syntax(j2k, everything[:3]) == ExplicitVRLittleEndian
    assert (
        choose_transfer_syntax(j2k, [ImplicitVRLittleEndian, RLELossless]) == ImplicitVRLittleEndian
    )
    assert choose_transfer_syntax(j2k, [RLELossless, JPEG2000]) == RLELossless
    assert choose_transfer_syntax(j2k, everything, preferred="rle") == RLELossless
    with pytest.raises(TranscodeError, match="lossy compression of lossless pixel data"):
        choose_transfer_syntax(j2k, [JPEG2000, JPEGBaseline8Bit])
    lossy = transcode(smooth(32, 32), JPEGBaseline8Bit)
    assert choose_transfer_syntax(lossy, [RLELossless, JPEG2000]) == JPEG2000
    with pytest.raises(TranscodeError, match="would claim lossless"):
        choose_transfer_syntax(lossy, [RLELossless, JPEGLossless])


def test_encode_for_returns_stored_bytes_or_a_conversion(tmp_path: Path) -> None:
    ds = make_dataset(rows=32, columns=32)
    path = tmp_path / "stored.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    data, chosen = encode_for(path, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    assert chosen == ExplicitVRLittleEndian and raw.endswith(data) and len(data) < len(raw)
    data, chosen = encode_for(raw, [JPEGLossless], file_meta=True)
    assert chosen == JPEGLossless
    decoded = pydicom.dcmread(io.BytesIO(data))
    assert decoded.file_meta.TransferSyntaxUID == JPEGLossless
    np.testing.assert_array_equal(pixels(decoded), ds.pixel_array)
    data, chosen = encode_for(path, [ImplicitVRLittleEndian], OutputEncoding(group_lengths=True))
    bare = pydicom.filereader.read_dataset(
        io.BytesIO(data), is_implicit_VR=True, is_little_endian=True
    )
    assert chosen == ImplicitVRLittleEndian and (0x0008, 0x0000) in bare
    preferred = OutputEncoding(transfer_syntax="j2k-lossless")
    assert (
        encode_for(path, [ExplicitVRLittleEndian, JPEG2000Lossless], preferred)[1]
        == JPEG2000Lossless
    )
    with pytest.raises(TranscodeError, match="no accepted transfer syntax"):
        encode_for(path, [JPEGBaseline8Bit])


def convert_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="xvactor")
    add_parser(parser.add_subparsers(dest="verb"))
    return run(parser.parse_args(["convert", *argv]))


def test_convert_verb_exit_codes_and_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.dcm"
    make_dataset(rows=16, columns=16).save_as(source, enforce_file_format=True)
    out = tmp_path / "out.dcm"
    assert convert_cli(str(source), str(out), "--ts", "rle", "--group-lengths") == 0
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == RLELossless
    assert convert_cli(str(source), str(out), "--ts", "keep", "--big-endian") == 0
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    assert convert_cli(str(source), str(out), "--ts", "1.2.840.10008.1.2", "--explicit") == 0
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert capsys.readouterr().err == ""
    assert convert_cli(str(source), str(out), "--ts", "jpeg-baseline") == 1
    err = capsys.readouterr().err
    assert err.startswith("xvactor convert: ") and err.count("\n") == 1 and "8 bit" in err
    assert convert_cli(str(source), str(out), "--ts", "j2k", "--implicit") == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert convert_cli(str(source), str(out), "--ts", "nope") == 2
    assert convert_cli(str(tmp_path / "missing"), str(out), "--ts", "rle") == 1
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        convert_cli(str(source), str(out), "--implicit", "--explicit", "--ts", "rle")
    assert caught.value.code == 2
