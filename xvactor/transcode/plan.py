"""Decide a conversion before doing it: what happens to the pixels, and the attributes after.

The pure "decide" step of the engine: :func:`make_plan` reads only attributes and raises
:class:`TranscodeError` for what cannot be done faithfully; :func:`apply_plan` writes the
Image Pixel and lossy compression attributes the converted dataset must carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian

from xvactor.transcode.codecs import check_encodable, decoded_info, encoded_info
from xvactor.transcode.errors import TranscodeError
from xvactor.transcode.pixels import PixelInfo
from xvactor.transcode.syntaxes import (
    ENCODABLE,
    LOSSY,
    NEW_LOSSY_METHOD,
    READABLE,
    is_native,
    name_of,
)

__all__ = ["Mode", "Plan", "apply_plan", "make_plan"]

#: ``none``: no Pixel Data; ``copy``: value kept; ``swap``: native, other byte order;
#: ``transcode``: every frame decoded and encoded again.
Mode = Literal["none", "copy", "swap", "transcode"]

_FLOAT_PIXELS: Final = ("FloatPixelData", "DoubleFloatPixelData")
_OFFSET_TABLES: Final = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")
_DS_MAX: Final = 16


@dataclass(frozen=True, slots=True)
class Plan:
    """What converting a dataset from `source` to `target` does.

    Attributes
    ----------
    source, target : pydicom.uid.UID
        Transfer syntaxes.
    mode : Mode
        What happens to Pixel Data.
    info : PixelInfo or None
        The source's Image Pixel attributes (None without Pixel Data).
    decoded : PixelInfo or None
        Those of the decoded frames handed to the encoder.
    output : PixelInfo or None
        Those of the result.
    lossy_source : bool
        The pixels were lossy compressed before (PS3.3 C.7.6.1.1.5).
    lossy_step : bool
        This conversion compresses lossily.
    """

    source: UID
    target: UID
    mode: Mode
    info: PixelInfo | None = None
    decoded: PixelInfo | None = None
    output: PixelInfo | None = None
    lossy_source: bool = False
    lossy_step: bool = False


def make_plan(ds: Dataset, source: UID, target: UID) -> Plan:
    """Return the plan for converting `ds` from `source` to `target`.

    Raises
    ------
    TranscodeError
        If `target` is not writable, `source` not readable, or the image cannot be carried
        faithfully by `target` (see :func:`xvactor.transcode.codecs.check_encodable`).
    """
    if target != source and target not in ENCODABLE:
        msg = f"cannot write {name_of(target)}"
        raise TranscodeError(msg)
    if "PixelData" not in ds:
        floats = [keyword for keyword in _FLOAT_PIXELS if keyword in ds]
        if floats and not is_native(target):
            msg = f"{floats[0]} can only be sent uncompressed, not in {name_of(target)}"
            raise TranscodeError(msg)
        return Plan(source, target, "none")
    info = PixelInfo.from_dataset(ds)
    lossy_source = source in LOSSY or ds.get("LossyImageCompression") == "01"
    plan = Plan(source, target, "copy", info, info, info, lossy_source=lossy_source)
    if source == target:
        return plan
    if is_native(source) and is_native(target):
        swap = (source == ExplicitVRBigEndian) != (target == ExplicitVRBigEndian)
        return Plan(source, target, "swap" if swap else "copy", info, info, info, lossy_source)
    if not is_native(source) and source not in READABLE:
        msg = f"cannot decode {name_of(source)}: it is not one of the supported syntaxes"
        raise TranscodeError(msg)
    decoded = info.with_(planar_configuration=0)
    if not is_native(source):
        decoded = decoded_info(source, info)
    if is_native(target):
        if info.bits_allocated == 1:
            msg = "Bits Allocated 1 in a compressed syntax is not supported"
            raise TranscodeError(msg)
        return Plan(source, target, "transcode", info, decoded, decoded, lossy_source)
    check_encodable(target, decoded, lossy_source=lossy_source)
    output = encoded_info(target, decoded)
    return Plan(
        source,
        target,
        "transcode",
        info,
        decoded,
        output,
        lossy_source=lossy_source,
        lossy_step=target in LOSSY,
    )


def apply_plan(ds: Dataset, plan: Plan, *, compressed_size: int | None = None) -> None:
    """Set the attributes `plan` changes on `ds` (the converted dataset, in place).

    Photometric Interpretation and Planar Configuration (PS3.3 C.7.6.3.1.2-3); the
    Extended Offset Table goes (it described the old fragments); after a lossy step Lossy
    Image Compression is "01" and this step's ratio and method are appended to Lossy Image
    Compression Ratio and Method (PS3.3 C.7.6.1.1.5). A lossy source keeps "01" even
    after decompression.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The dataset to update.
    plan : Plan
        The conversion done.
    compressed_size : int, optional
        Bytes of all compressed frames, for the ratio (needed after a lossy step).
    """
    if plan.mode in ("none", "copy", "swap") or plan.output is None:
        if plan.lossy_source and plan.mode != "none":
            ds.LossyImageCompression = "01"
        return
    output = plan.output
    ds.PhotometricInterpretation = output.photometric_interpretation
    if output.samples_per_pixel > 1:
        ds.PlanarConfiguration = output.planar_configuration
    for keyword in _OFFSET_TABLES:
        if keyword in ds:
            delattr(ds, keyword)
    if plan.lossy_source:
        ds.LossyImageCompression = "01"
    if not plan.lossy_step:
        return
    decoded = plan.decoded or output
    uncompressed = decoded.frame_length * decoded.number_of_frames
    ratio = uncompressed / max(compressed_size or uncompressed, 1)
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*_values(ds, "LossyImageCompressionRatio"), _ds(ratio)]
    method = NEW_LOSSY_METHOD[plan.target]
    ds.LossyImageCompressionMethod = [*_values(ds, "LossyImageCompressionMethod"), method]


def _values(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, str | float | int):
        return [str(value)]
    return [str(item) for item in value]


def _ds(value: float) -> str:
    text = f"{value:.2f}"
    return text if len(text) <= _DS_MAX else f"{value:.6g}"
