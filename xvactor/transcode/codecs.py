"""Encode and decode one frame in each compressed transfer syntax, and what each can carry.

Codecs (all permissively licensed; see the package docstring for the choice):

* RLE Lossless (PS3.5 Annex G): pylibjpeg-rle (MIT).
* JPEG (PS3.5 Section 8.2.1, ISO 10918): imagecodecs (BSD-3) over libjpeg-turbo 3, which
  encodes and decodes baseline 8 bit, extended 12 bit and lossless (Process 14) 2-16 bit.
* JPEG 2000 (PS3.5 Section 8.2.4, ISO 15444): imagecodecs over OpenJPEG.

Arrays are colour-by-pixel, shape :attr:`PixelInfo.shape`, dtype :attr:`PixelInfo.dtype`,
holding pixel values (see :func:`xvactor.transcode.pixels.clean_bits`).
"""

from __future__ import annotations

from typing import Final

import imagecodecs
import numpy as np
from numpy.typing import NDArray
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)
from rle.utils import decode_pixel_data as rle_decode
from rle.utils import encode_pixel_data as rle_encode

from xvactor.transcode.errors import TranscodeError
from xvactor.transcode.pixels import PixelInfo, clean_bits
from xvactor.transcode.syntaxes import J2K_FAMILY, JPEG_FAMILY, LOSSY, is_native, name_of

__all__ = [
    "DEFAULT_J2K_PSNR",
    "DEFAULT_JPEG_QUALITY",
    "check_encodable",
    "decode_frame",
    "decoded_info",
    "encode_frame",
    "encoded_info",
]

DEFAULT_JPEG_QUALITY: Final = 90
DEFAULT_J2K_PSNR: Final = 50
_LOSSY_JPEG: Final = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})
_JPEG_LOSSLESS: Final = frozenset({JPEGLossless, JPEGLosslessSV1})
_YBR_JPEG: Final = frozenset({"YBR_FULL_422", "YBR_FULL"})
_YBR_J2K: Final = frozenset({"YBR_ICT", "YBR_RCT"})
_SUBSAMPLED: Final = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420"})
_BASELINE_PHOTOMETRIC: Final = frozenset({"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL"})
_J2K_MAX_RESOLUTIONS: Final = 6
_THREADS: Final = 2


def check_encodable(target: UID, info: PixelInfo, *, lossy_source: bool) -> None:
    """Raise :class:`TranscodeError` unless `target` can carry this image faithfully.

    Parameters
    ----------
    target : pydicom.uid.UID
        A compressed syntax of :data:`~xvactor.transcode.syntaxes.ENCODABLE`.
    info : PixelInfo
        The image as it will be handed to the encoder (after decoding the source).
    lossy_source : bool
        Whether the pixels already went through lossy compression (PS3.3 C.7.6.1.1.5).
    """
    name = name_of(target)
    if lossy_source and target not in LOSSY:
        msg = (
            f"the pixel data was lossy compressed (Lossy Image Compression 01): {name} "
            "would claim lossless; convert to an uncompressed or a lossy syntax"
        )
        raise TranscodeError(msg)
    if info.bits_allocated == 1:
        msg = f"Bits Allocated 1 cannot be encoded in {name}: use an uncompressed syntax"
        raise TranscodeError(msg)
    if info.photometric_interpretation in _SUBSAMPLED:
        msg = f"{info.photometric_interpretation} uncompressed pixel data is not supported"
        raise TranscodeError(msg)
    if target in LOSSY and info.photometric_interpretation == "PALETTE COLOR":
        msg = f"PALETTE COLOR indices cannot be lossy compressed into {name}"
        raise TranscodeError(msg)
    depth = f"Bits Allocated/Stored {info.bits_allocated}/{info.bits_stored}"
    if target == JPEGBaseline8Bit:
        if info.bits_allocated != 8 or info.signed:
            msg = f"{name} carries unsigned 8 bit samples only, not {depth}"
            msg += " signed" if info.signed else ""
            raise TranscodeError(msg)
        if info.photometric_interpretation not in _BASELINE_PHOTOMETRIC:
            msg = f"{name} cannot carry {info.photometric_interpretation}"
            raise TranscodeError(msg)
    elif target in (JPEGLossless, JPEG2000Lossless, JPEG2000):
        low = 2 if target == JPEGLossless else 1
        if info.bits_allocated not in (8, 16) or info.bits_stored < low:
            msg = f"{name} carries {low}-16 bit samples in 8 or 16 bits, not {depth}"
            raise TranscodeError(msg)
    elif target != RLELossless:
        msg = f"cannot encode {name}"
        raise TranscodeError(msg)


def decoded_info(source: UID, info: PixelInfo) -> PixelInfo:
    """Return the Image Pixel attributes of the frames :func:`decode_frame` returns.

    Colour JPEG lossy data in YBR_FULL(_422) and JPEG 2000 data with a component transform
    (YBR_ICT/YBR_RCT) come out as RGB (PS3.5 Sections 8.2.1 and 8.2.4); decoded frames are
    always colour-by-pixel.
    """
    photometric = info.photometric_interpretation
    if info.samples_per_pixel == 3 and (
        (source in _LOSSY_JPEG and photometric in _YBR_JPEG)
        or (source in J2K_FAMILY and photometric in _YBR_J2K)
    ):
        photometric = "RGB"
    return info.with_(photometric_interpretation=photometric, planar_configuration=0)


def encoded_info(target: UID, info: PixelInfo) -> PixelInfo:
    """Return the Image Pixel attributes after encoding frames of `info` into `target`.

    JPEG Baseline colour becomes YBR_FULL_422 (4:2:2 subsampled, PS3.5 8.2.1); JPEG 2000
    RGB becomes YBR_RCT (lossless) or YBR_ICT (lossy) with the component transform
    (PS3.5 8.2.4); Planar Configuration is 0 (RLE frames are segmented by sample anyway,
    PS3.5 G.2, and PS3.3 C.7.6.3.1.3 asks for 0 with the JPEG syntaxes).
    """
    photometric = info.photometric_interpretation
    if info.samples_per_pixel == 3:
        if target == JPEGBaseline8Bit:
            photometric = "YBR_FULL_422"
        elif target in J2K_FAMILY and photometric == "RGB":
            photometric = "YBR_RCT" if target == JPEG2000Lossless else "YBR_ICT"
    return info.with_(photometric_interpretation=photometric, planar_configuration=0)


def encode_frame(
    target: UID, arr: NDArray[np.integer], info: PixelInfo, quality: int | None = None
) -> bytes:
    """Return one frame encoded in `target` (checked first with :func:`check_encodable`).

    Parameters
    ----------
    target : pydicom.uid.UID
        RLE Lossless, JPEG Baseline, JPEG Lossless, JPEG 2000 Lossless or JPEG 2000.
    arr : numpy.ndarray
        Pixel values, colour-by-pixel.
    info : PixelInfo
        Describes `arr`.
    quality : int, optional
        See :class:`xvactor.transcode.options.OutputEncoding`.
    """
    arr = np.ascontiguousarray(arr)
    try:
        if target == RLELossless:
            data = np.ascontiguousarray(arr, dtype=info.dtype).tobytes()
            return bytes(
                rle_encode(
                    data,
                    rows=info.rows,
                    columns=info.columns,
                    samples_per_pixel=info.samples_per_pixel,
                    bits_allocated=info.bits_allocated,
                    byteorder="<",
                )
            )
        if target == JPEGBaseline8Bit:
            return _encode_baseline(arr, info, quality or DEFAULT_JPEG_QUALITY)
        if target == JPEGLossless:
            return _encode_jpeg_lossless(arr, info)
        if target in J2K_FAMILY:
            lossy = quality or DEFAULT_J2K_PSNR
            return _encode_j2k(arr, info, None if target == JPEG2000Lossless else lossy)
    except (ValueError, RuntimeError, imagecodecs.DelayedImportError) as exc:
        msg = f"{name_of(target)} encoder failed: {_one_line(exc)}"
        raise TranscodeError(msg) from exc
    msg = f"cannot encode {name_of(target)}"
    raise TranscodeError(msg)


def decode_frame(source: UID, data: bytes, info: PixelInfo) -> NDArray[np.integer]:
    """Return one compressed frame of `source` as pixel values.

    Parameters
    ----------
    source : pydicom.uid.UID
        A compressed syntax of :data:`~xvactor.transcode.syntaxes.READABLE`.
    data : bytes
        The frame's fragments, joined.
    info : PixelInfo
        The Image Pixel attributes of the dataset the frame comes from.

    Returns
    -------
    numpy.ndarray
        Shape :attr:`PixelInfo.shape`, dtype :attr:`PixelInfo.dtype`, in the
        :attr:`~PixelInfo.photometric_interpretation` of :func:`decoded_info`.
    """
    try:
        if source == RLELossless:
            arr = _decode_rle(data, info)
        elif source in JPEG_FAMILY:
            arr = _decode_jpeg(source, data, info)
        elif source in J2K_FAMILY:
            arr = imagecodecs.jpeg2k_decode(data, numthreads=_THREADS)
        else:
            kind = "uncompressed" if is_native(source) else "unsupported"
            msg = f"cannot decode {kind} {name_of(source)} as a compressed frame"
            raise TranscodeError(msg)
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, TranscodeError):
            raise
        msg = f"corrupt {name_of(source)} frame: {_one_line(exc)}"
        raise TranscodeError(msg) from exc
    if arr.shape != info.shape:
        msg = f"a {name_of(source)} frame decodes to shape {arr.shape}, expected {info.shape}"
        raise TranscodeError(msg)
    if arr.dtype.itemsize != info.dtype.itemsize:
        arr = arr.astype(f"<u{info.dtype.itemsize}")
    return clean_bits(arr.view(info.dtype) if arr.dtype != info.dtype else arr, info)


def _encode_baseline(arr: NDArray[np.integer], info: PixelInfo, quality: int) -> bytes:
    if info.samples_per_pixel == 1:
        return bytes(imagecodecs.jpeg8_encode(arr.astype(np.uint8, copy=False), level=quality))
    source = "RGB" if info.photometric_interpretation == "RGB" else "YCBCR"
    encoded = imagecodecs.jpeg8_encode(
        arr.astype(np.uint8, copy=False),
        level=quality,
        colorspace=source,
        outcolorspace="YCBCR",
        subsampling="422",
    )
    return bytes(encoded)


def _encode_jpeg_lossless(arr: NDArray[np.integer], info: PixelInfo) -> bytes:
    # Two's complement samples go in as their Bits Stored bit pattern (PS3.5 8.2.1).
    dtype = np.uint8 if info.bits_stored <= 8 else np.uint16
    mask = (1 << info.bits_stored) - 1
    unsigned = (arr.view(info.dtype.str.replace("i", "u")) & mask).astype(dtype, copy=False)
    colour = "RGB" if info.samples_per_pixel == 3 else None
    encoded = imagecodecs.jpeg8_encode(
        unsigned,
        lossless=True,
        predictor=1,
        bitspersample=info.bits_stored,
        colorspace=colour,
        outcolorspace=colour,
    )
    return bytes(encoded)


def _encode_j2k(arr: NDArray[np.integer], info: PixelInfo, quality: int | None) -> bytes:
    # OpenJPEG needs 2**(resolutions - 1) pixels along each side.
    resolutions = min(_J2K_MAX_RESOLUTIONS, min(info.rows, info.columns).bit_length())
    lossless = quality is None
    encoded = imagecodecs.jpeg2k_encode(
        arr,
        level=None if lossless else quality,
        codecformat="J2K",
        reversible=lossless,
        bitspersample=info.bits_stored,
        resolutions=resolutions,
        mct=info.photometric_interpretation == "RGB",
        numthreads=_THREADS,
    )
    return bytes(encoded)


def _decode_rle(data: bytes, info: PixelInfo) -> NDArray[np.integer]:
    frame = rle_decode(
        data,
        version=2,
        rows=info.rows,
        columns=info.columns,
        bits_allocated=info.bits_allocated,
        byteorder="<",
    )
    if len(frame) != info.frame_length:
        msg = f"{len(frame)} bytes decoded, expected {info.frame_length}"
        raise ValueError(msg)
    arr = np.frombuffer(frame, dtype=info.dtype)
    if info.samples_per_pixel == 1:
        return arr.reshape(info.shape)
    # Segments are ordered by sample (PS3.5 G.2): planes, whatever Planar Configuration says.
    return arr.reshape(info.samples_per_pixel, info.rows, info.columns).transpose(1, 2, 0)


def _decode_jpeg(source: UID, data: bytes, info: PixelInfo) -> NDArray[np.integer]:
    if info.samples_per_pixel != 3:
        return imagecodecs.jpeg8_decode(data)
    lossy_ybr = source in _LOSSY_JPEG and info.photometric_interpretation in _YBR_JPEG
    return imagecodecs.jpeg8_decode(
        data, colorspace="YCBCR" if lossy_ybr else "RGB", outcolorspace="RGB"
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
